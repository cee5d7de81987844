//! Causal multi-head self-attention, the reference kernel (llm.c style: the probabilities are stored).
//!
//! qkv (B, T, 3C) holds q = [0, C), k = [C, 2C), v = [2C, 3C); head h uses channels h·hs..(h+1)·hs.
//! s_ij = q_i·k_j / √hs for j ≤ i (causal), p_i = normalize(s_i), y_i = Σ_j p_ij v_j.
//!
//! `normalize` is the one call site of the attention variant (`Variant`); with m the row maximum:
//!   softmax, gated, outgate:  p_j = exp(s_j − m) / Σ_k exp(s_k − m)
//!   quiet:    m ≥ 0,     p_j = exp(s_j − m) / (exp(−m) + Σ_k exp(s_k − m))          (softmax1)
//!   sink:     m ≥ σ_h,   p_j = exp(s_j − m) / (exp(σ_h − m) + Σ_k exp(s_k − m))     (learned σ_h)
//!   clipped:  p_j = clip((ζ − γ)·softmax(s)_j + γ, 0, 1)
//!   relu:     p_j = max(s_j, 0) / (i + 1)                           (no sum: depends on the position i)
//!   sigmoid:  p_j = 1 / (1 + exp(−s_j))                             (each key on its own)
//!   softpick: m ≥ 0,     p_j = max(e^{s_j−m} − e^{−m}, 0) / (Σ_k |e^{s_k−m} − e^{−m}| + ε·e^{−m})
//! softmax1 is softmax with one extra key of score 0 and value 0; the sink variant gives that key the
//! learned score σ_h, and is bitwise softmax1 at σ_h = 0 (exp(σ_h − m) is then exp(−m)).
//! The gated variants normalise as softmax: their gates act around this kernel (`attention_gate`).
//! relu, sigmoid and softpick are the row rules of `attention_rows` (sources, stable forms and
//! subgradients there); their rows need not sum to 1 (relu and sigmoid may exceed it), and a softpick row
//! whose scores are all ≤ 0 is all zeros.
//!
//! Backward (`normalize_backward`), g = ∂L/∂p:
//!   softmax, quiet, sink:  ∂L/∂s_j = p_j (g_j − D),  D = Σ_k p_k g_k;   ∂L/∂σ_h = −p_null·D,
//!                          p_null = 1 − Σ_k p_k = exp(σ_h − lse) (the null key's weight)
//!   clipped: with u = softmax(s) and g'_j = (ζ − γ)·g_j where 0 < (ζ−γ)u_j + γ < 1, else 0 (the clip's
//!            subgradient is taken as 0 on its boundary): ∂L/∂s_j = u_j (g'_j − Σ_k u_k g'_k).
//!   relu:     ∂L/∂s_j = g_j / (i + 1) where p_j > 0, else 0
//!   sigmoid:  ∂L/∂s_j = g_j (1 − p_j) p_j
//!   softpick: with w_j = e^{s_j}/N (N the normaliser) and D = Σ_k p_k g_k: ∂L/∂s_j = w_j (g_j − D) for
//!             s_j > 0, w_j D for s_j < 0, 0 at s_j = 0.
//! The stored weights of the clipped variant lose u where the clip gives 0, and softpick's lose w where
//! s_j ≤ 0, so their backward recomputes the row's scores (exactly the forward's bits: same dot
//! products), then u (same normaliser) or w.
//!
//! Clipped softmax and the causal mask. Bondarenko et al. set γ = −α/T with T the sequence length
//! (their OPT code: `gamma = -alpha / max_seq_length` for every row, masked keys included). Row i of a
//! causal model sees only i+1 keys, so "the number of visible keys" would be the natural per-row T; we
//! keep the paper's constant γ = −α/block_size for every row instead: α = 12 was tuned with a constant
//! γ in a causal LM, and a per-row γ_i = −α/(i+1) would zero every weight below α/(i+1+α) — all but
//! weights above 6/7 in row 1 — so early rows could hardly attend at all. A constant γ also keeps the
//! model's function independent of the evaluated length. Masked keys (j > i) are never normalised and
//! stay exactly 0 (in the paper they are too: softmax gives 0 there, and 0·(ζ−γ) + γ < 0 clips to 0).
//! Under softmax1, and under relu, sigmoid and softpick, a wrong mask gives finite weights rather than
//! NaN, so the tests check the mask directly.

use super::attention_rows::{
    relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softpick_backward, softpick_forward,
    softpick_recompute, softpick_z,
};
use super::real::{Real, SyncPtr};
use crate::config::{AttentionKind, ModelConfig};
use crate::engine::dropout::Dropout;
use rayon::prelude::*;

/// One layer's attention variant as the kernels see it: the switch and the values it reads.
#[derive(Clone, Copy, Debug)]
pub struct Variant<'a, F> {
    pub kind: AttentionKind,
    /// The sink logits σ_h of this layer (n_head), read by `Sink` only.
    pub sink: &'a [F],
    /// ζ and γ of `Clipped` (ζ = 1, γ = 0 is no clip).
    pub zeta: F,
    pub gamma: F,
}

impl<'a, F: Real> Variant<'a, F> {
    /// The variant of a model: ζ, γ = −α/block_size from the config, and one layer's sink logits
    /// (empty unless the variant is `Sink`).
    pub fn of(cfg: &ModelConfig, sink: &'a [F]) -> Self {
        Variant {
            kind: cfg.attention,
            sink,
            zeta: F::from_f64(cfg.clip_zeta as f64),
            gamma: F::from_f64(cfg.clip_gamma()),
        }
    }

    /// Checks the kernels rely on: sink logits for every head.
    pub fn check(&self, nh: usize) {
        assert!(
            self.kind != AttentionKind::Sink || self.sink.len() >= nh,
            "sink attention needs {nh} sink logits, got {}",
            self.sink.len()
        );
    }
}

/// How a row's scores become weights: a softmax (with `RowRule`'s null logit and clip) or one of the
/// rules of `attention_rows`, which have neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowForm {
    Softmax,
    Relu,
    Sigmoid,
    Softpick,
}

/// The row normaliser of head h: its form, the softmax's extra logit ("null key", value 0) and the
/// clip, the things in which the variants differ. Read by both kernels' row normalisers and their
/// backward.
#[derive(Clone, Copy, Debug)]
pub struct RowRule<F> {
    pub form: RowForm,
    /// 0 for quiet, σ_h for sink, none for the others.
    pub null: Option<F>,
    /// (a, γ) with a = ζ − γ for clipped: p = clip(a·u + γ, 0, 1).
    pub clip: Option<(F, F)>,
}

impl<F: Real> Variant<'_, F> {
    /// The rule for the rows of head h: the one `match` on the variant in the attention kernels.
    #[inline]
    pub fn rule(&self, h: usize) -> RowRule<F> {
        let plain = |form| RowRule { form, null: None, clip: None };
        match self.kind {
            AttentionKind::Softmax | AttentionKind::Gated | AttentionKind::Outgate => plain(RowForm::Softmax),
            AttentionKind::Quiet => RowRule { null: Some(F::ZERO), ..plain(RowForm::Softmax) },
            AttentionKind::Sink => RowRule { null: Some(self.sink[h]), ..plain(RowForm::Softmax) },
            AttentionKind::Clipped => {
                RowRule { clip: Some((self.zeta - self.gamma, self.gamma)), ..plain(RowForm::Softmax) }
            }
            AttentionKind::Relu => plain(RowForm::Relu),
            AttentionKind::Sigmoid => plain(RowForm::Sigmoid),
            AttentionKind::Softpick => plain(RowForm::Softpick),
        }
    }
}

/// clip(a·u + γ, 0, 1)
#[inline(always)]
pub fn clip_weight<F: Real>(a: F, gamma: F, u: F) -> F {
    let w = a * u + gamma;
    if w > F::ONE {
        F::ONE
    } else if w > F::ZERO {
        w
    } else {
        F::ZERO
    }
}

/// Scores → the softmax part of the normaliser in place (with the null logit when there is one);
/// returns lse = m + ln z. Masked keys may be given as −∞ (they get exactly 0). A fully masked row with
/// a null logit gives zeros; a fully masked row without one is undefined.
pub fn softmax_part<F: Real>(null: Option<F>, row: &mut [F]) -> F {
    let mut m = row.iter().fold(F::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = F::ZERO;
    if let Some(s) = null {
        m = m.max(s);
        sum = (s - m).exp();
    }
    for x in row.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    let inv = F::ONE / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
    m + F::from_f64(sum.to_f64().ln())
}

/// Scores → attention weights of head h, in place, over the visible keys of one row (row i of the
/// causal mask: i + 1 keys).
pub fn normalize<F: Real>(v: &Variant<F>, h: usize, row: &mut [F]) {
    let rule = v.rule(h);
    let visible = row.len();
    match rule.form {
        RowForm::Softmax => {
            softmax_part(rule.null, row);
            if let Some((a, gamma)) = rule.clip {
                for x in row.iter_mut() {
                    *x = clip_weight(a, gamma, *x);
                }
            }
        }
        RowForm::Relu => relu_forward(row, visible),
        RowForm::Sigmoid => sigmoid_forward(row),
        RowForm::Softpick => {
            softpick_forward(row, visible);
        }
    }
}

/// What `normalize_backward` reads beside the weights, from the row's scores in place (`needs_scores`):
/// the softmax before the clip (clipped), softpick's signed w_j = sign(s_j)·e^{s_j}/N.
pub fn from_scores<F: Real>(rule: &RowRule<F>, scores: &mut [F]) {
    match rule.form {
        RowForm::Softmax => {
            softmax_part(None, scores);
        }
        RowForm::Softpick => {
            let z = softpick_z(scores);
            softpick_recompute(scores, None, scores.len(), z);
        }
        RowForm::Relu | RowForm::Sigmoid => {}
    }
}

impl<F: Real> RowRule<F> {
    /// Whether the backward needs more of the row than its weights (`from_scores`): clipped and softpick.
    pub fn needs_scores(&self) -> bool {
        self.clip.is_some() || self.form == RowForm::Softpick
    }
}

/// ∂L/∂s from g = ∂L/∂p, in place over g, for one row of head h; returns this row's ∂L/∂σ_h (the
/// null logit's gradient: −p_null·D; 0 without a null logit). `p` are the row's weights as `normalize`
/// gave them; `u` what `from_scores` makes of the row's scores where the rule `needs_scores` (pass `p`
/// otherwise).
pub fn normalize_backward<F: Real>(v: &Variant<F>, h: usize, p: &[F], u: &[F], g: &mut [F]) -> F {
    let rule = v.rule(h);
    match rule.form {
        RowForm::Softmax => {}
        RowForm::Relu => {
            relu_backward(p, g, p.len());
            return F::ZERO;
        }
        RowForm::Sigmoid => {
            sigmoid_backward(p, g);
            return F::ZERO;
        }
        RowForm::Softpick => {
            softpick_backward(u, dot(p, g), g);
            return F::ZERO;
        }
    }
    if let Some((a, gamma)) = rule.clip {
        for (gj, &uj) in g.iter_mut().zip(u) {
            let w = a * uj + gamma;
            *gj = if w > F::ZERO && w < F::ONE { a * *gj } else { F::ZERO };
        }
        return softmax_backward(u, g);
    }
    let d = softmax_backward(p, g);
    match rule.null {
        Some(_) => -(F::ONE - p.iter().fold(F::ZERO, |s, &x| s + x)) * d,
        None => F::ZERO,
    }
}

/// g ← p ⊙ (g − D) with D = Σ p g (softmax's and softmax1's backward); returns D.
fn softmax_backward<F: Real>(p: &[F], g: &mut [F]) -> F {
    let mut dot = F::ZERO;
    for (&pj, &gj) in p.iter().zip(g.iter()) {
        dot += pj * gj;
    }
    for (gj, &pj) in g.iter_mut().zip(p) {
        *gj = pj * (*gj - dot);
    }
    dot
}

#[inline]
fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    let mut s = F::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// Dropout on the attention weights of one layer: the pass's dropout, this layer's site, and the place in
/// the whole batch of the first sequence given to the kernel, since masks are keyed by (sequence, head,
/// i, j) of the whole batch, however it is cut into shards.
#[derive(Clone, Copy, Debug)]
pub struct AttnMask<'a> {
    pub dropout: &'a Dropout,
    pub site: u64,
    pub first_seq: usize,
}

pub type AttnDropout<'a> = Option<AttnMask<'a>>;

impl<'a> AttnMask<'a> {
    /// (dropout, site key, offset of (sequence, head) indices) for a kernel over `nh` heads: weight
    /// (i, j) of the kernel's (sequence, head) bh is element ((bh + offset)·T + i)·T + j of the site.
    pub fn keyed(&self, nh: usize) -> (&'a Dropout, u64, usize) {
        (self.dropout, self.dropout.site(self.site), self.first_seq * nh)
    }
}

/// out (B, T, C), att (B, NH, T, T) attention weights before dropout, from qkv (B, T, 3C)
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<F: Real>(
    out: &mut [F],
    att: &mut [F],
    qkv: &[F],
    variant: &Variant<F>,
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
    variant.check(nh);
    att[..b * nh * t * t].par_chunks_mut(t * t).enumerate().for_each(|(bh, att_bh)| {
        let (bi, h) = (bh / nh, bh % nh);
        let key = dropout.map(|m| m.keyed(nh));
        for i in 0..t {
            let q = &qkv[(bi * t + i) * 3 * c + h * hs..][..hs];
            let row = &mut att_bh[i * t..(i + 1) * t];
            for j in 0..=i {
                let k = &qkv[(bi * t + j) * 3 * c + c + h * hs..][..hs];
                row[j] = dot(q, k) * scale;
            }
            normalize(variant, h, &mut row[..=i]);
            row[i + 1..].fill(F::ZERO);
            // SAFETY: task (bi, h) alone writes channels h·hs..(h+1)·hs of the rows of sequence bi.
            let y = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((bi * t + i) * c + h * hs), hs) };
            y.fill(F::ZERO);
            for j in 0..=i {
                let mut pj = row[j];
                if let Some((d, key, off)) = key {
                    pj *= d.factor::<F>(key, (((bh + off) * t + i) * t + j) as u64);
                }
                let v = &qkv[(bi * t + j) * 3 * c + 2 * c + h * hs..][..hs];
                for (yv, &vv) in y.iter_mut().zip(v) {
                    *yv += pj * vv;
                }
            }
        }
    });
}

/// Scratch floats `attention_backward` needs: two rows per (sequence, head).
pub fn backward_scratch(b: usize, t: usize, nh: usize) -> usize {
    2 * b * nh * t
}

/// dqkv (B, T, 3C) += ∂L/∂qkv from dout (B, T, C); `dnull` (B, NH), when given, is *set* to each
/// (sequence, head)'s ∂L/∂σ_h (the caller sums over sequences). `scratch` holds `backward_scratch` floats.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Real>(
    dqkv: &mut [F],
    dnull: Option<&mut [F]>,
    scratch: &mut [F],
    dout: &[F],
    qkv: &[F],
    att: &[F],
    variant: &Variant<F>,
    dropout: AttnDropout,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let dqkv_ptr = SyncPtr(dqkv.as_mut_ptr());
    assert!(dqkv.len() >= b * t * 3 * c && scratch.len() >= backward_scratch(b, t, nh) && att.len() >= b * nh * t * t);
    variant.check(nh);
    let dnull_ptr = dnull.map(|d| {
        assert!(d.len() >= b * nh);
        SyncPtr(d.as_mut_ptr())
    });
    scratch[..backward_scratch(b, t, nh)].par_chunks_mut(2 * t).enumerate().for_each(|(bh, sc)| {
        let (g, u) = sc.split_at_mut(t);
        let mut dnull_bh = F::ZERO;
        let (bi, h) = (bh / nh, bh % nh);
        let key = dropout.map(|m| m.keyed(nh));
        // SAFETY: task (bi, h) alone touches channels h·hs..(h+1)·hs of q, k and v in sequence bi.
        let dslice = |row: usize, part: usize| unsafe {
            std::slice::from_raw_parts_mut(dqkv_ptr.get().add((bi * t + row) * 3 * c + part * c + h * hs), hs)
        };
        for i in 0..t {
            let p = &att[(bh * t + i) * t..][..=i];
            let dy = &dout[(bi * t + i) * c + h * hs..][..hs];
            for j in 0..=i {
                let f = key.map_or(F::ONE, |(d, key, off)| d.factor::<F>(key, (((bh + off) * t + i) * t + j) as u64));
                let v = &qkv[(bi * t + j) * 3 * c + 2 * c + h * hs..][..hs];
                g[j] = dot(dy, v) * f;
                let pf = p[j] * f;
                for (dv, &d) in dslice(j, 2).iter_mut().zip(dy) {
                    *dv += pf * d;
                }
            }
            let q = &qkv[(bi * t + i) * 3 * c + h * hs..][..hs];
            // the softmax before the clip, or softpick's w, from the scores recomputed as the forward did
            let rule = variant.rule(h);
            let u: &[F] = if rule.needs_scores() {
                for j in 0..=i {
                    u[j] = dot(q, &qkv[(bi * t + j) * 3 * c + c + h * hs..][..hs]) * scale;
                }
                from_scores(&rule, &mut u[..=i]);
                &u[..=i]
            } else {
                p
            };
            dnull_bh += normalize_backward(variant, h, p, u, &mut g[..=i]);
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
        if let Some(d) = dnull_ptr {
            // SAFETY: task bh alone writes element bh.
            unsafe { *d.get().add(bh) = dnull_bh };
        }
    });
}

/// The sink logits' part of the backward: ∂L/∂σ_h += Σ over the b sequences, in order, of the kernels'
/// per-sequence parts `dnull` (B, NH).
pub fn sink_backward<F: Real>(dsink: &mut [F], dnull: &[F], b: usize, nh: usize) {
    for bi in 0..b {
        for (d, &x) in dsink.iter_mut().zip(&dnull[bi * nh..(bi + 1) * nh]) {
            *d += x;
        }
    }
}
