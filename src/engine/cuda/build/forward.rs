//! The forward pass as plan ops, one kernel or GEMM per line, as `engine::cpu::pass::forward_shard`:
//!
//!   x = drop(wte[idx] + wpe[0..T))                                             (B, T, C)
//!   per block:  x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
//!   attn(h) = c_proj(gate(h) ⊙ core(c_attn(h))),  core materialised per layer:
//!     q, k, v (B, NH, T, HS) ← qkv (B, T, 3C);  preatt = q kᵀ/√hs (B·NH, T, T);  att = rule(preatt);
//!     y = drop(att) v (B·NH, T, HS) → (B, T, C)
//!   logits = ln_f(x) lm_headᵀ (B·T, V);  losses = cross_entropy(logits, targets)

use super::super::kernel::{ActKernel, Kernel, RowKernel};
use super::super::plan::{Arg, Trans, View};
use super::bufs::layer;
use super::{int, opt, p, Builder};
use crate::config::{ActivationKind, GeluKind, ModelConfig};
use crate::engine::dropout::{site, Dropout, Site};
use crate::engine::params::Kind;

/// The MLP's activation kernel.
pub fn act_kernel(cfg: &ModelConfig) -> ActKernel {
    match (cfg.activation, cfg.gelu) {
        (ActivationKind::Gelu, GeluKind::Erf) => ActKernel::GeluErf,
        (ActivationKind::Gelu, GeluKind::Tanh) => ActKernel::GeluTanh,
        (ActivationKind::Relu, _) => ActKernel::Relu,
    }
}

/// The per-layer views of layer l for the batch of the builder (see `Bufs`).
pub struct LayerViews {
    pub ln1: View,
    pub ln1_mean: View,
    pub ln1_rstd: View,
    pub qkv: View,
    pub q: View,
    pub k: View,
    pub v: View,
    pub preatt: View,
    pub att: View,
    /// The weights y is made from: drop(att) with dropout, else att.
    pub att_used: View,
    pub atty: View,
    pub gate: Option<View>,
    pub attg: Option<View>,
    pub res2: View,
    pub ln2: View,
    pub ln2_mean: View,
    pub ln2_rstd: View,
    pub fch: View,
    pub hidden: View,
    pub res3: View,
}

impl Builder<'_> {
    pub fn layer_views(&self, l: usize) -> LayerViews {
        let bf = self.bufs;
        let (c, nh) = (self.cfg.n_embd, self.cfg.n_head);
        let (n, mx) = (self.n(), bf.max_b * bf.max_t);
        let (tt, mtt) = (self.b * nh * self.t * self.t, bf.max_b * nh * bf.max_t * bf.max_t);
        let g = self.cfg.attention.gate_groups(nh, c).unwrap_or(0);
        let per = |v: View, w: usize| layer(v, l, mx * w, n * w);
        let qkvr = per(bf.qkvr, 3 * c);
        let preatt = if bf.preatt_per_layer { layer(bf.preatt, l, mtt, tt) } else { bf.preatt.sub(0, tt) };
        let att = layer(bf.att, l, mtt, tt);
        LayerViews {
            ln1: per(bf.ln1, c),
            ln1_mean: per(bf.ln1_mean, 1),
            ln1_rstd: per(bf.ln1_rstd, 1),
            qkv: per(bf.qkv, 3 * c),
            q: qkvr.sub(0, n * c),
            k: qkvr.sub(n * c, n * c),
            v: qkvr.sub(2 * n * c, n * c),
            preatt,
            att,
            att_used: bf.att_drop.map_or(att, |d| layer(d, l, mtt, tt)),
            atty: per(bf.atty, c),
            gate: bf.gate.map(|v| layer(v, l, mx * g, n * g)),
            attg: bf.attg.map(|v| per(v, c)),
            res2: per(bf.res2, c),
            ln2: per(bf.ln2, c),
            ln2_mean: per(bf.ln2_mean, 1),
            ln2_rstd: per(bf.ln2_rstd, 1),
            fch: per(bf.fch, 4 * c),
            hidden: per(bf.hidden, 4 * c),
            res3: per(bf.res3, c),
        }
    }

    /// x ← drop(x) in place at a dropout site (nothing without dropout).
    pub fn dropout(&mut self, d: Option<Dropout>, s: u64, out: View, inp: View) {
        match d {
            Some(d) => {
                self.launch(Kernel::Dropout, vec![p(out), p(inp), int(out.len), Arg::U64(d.site(s)), Arg::F32(d.p)])
            }
            None => assert_eq!(out, inp, "without dropout the site is in place"),
        }
    }

    /// The sink logits of layer l (only the sink variant has them).
    pub fn sink(&self, l: usize) -> Option<View> {
        Some(self.w(Kind::Sink, l)).filter(|v| v.len > 0)
    }

    /// (ζ, γ) of the clipped variant as the kernels take them.
    pub fn clip_args(&self) -> [Arg; 2] {
        [Arg::F32(self.cfg.clip_zeta), Arg::F32(self.cfg.clip_gamma() as f32)]
    }
}

/// The forward pass of the builder's batch; with `targets`, the per-token losses into `bufs.losses`.
pub fn forward(b: &mut Builder, d: Option<Dropout>, targets: bool) {
    let (c, nh, nl, v) = (b.cfg.n_embd, b.cfg.n_head, b.cfg.n_layer, b.cfg.vocab_size);
    let (n, bs, t, hs) = (b.n(), b.b, b.t, c / nh);
    let bf = b.bufs;
    let gates = b.cfg.attention.gate_groups(nh, c);
    let rk = RowKernel::of(b.cfg.attention);
    let scale = 1.0 / (hs as f32).sqrt();
    let (encoded, proj) = (bf.encoded.sub(0, n * c), bf.proj.sub(0, n * c));
    let (idx, yh) = (bf.idx.sub(0, n), bf.yh.sub(0, n * c));

    let (wte, wpe) = (b.w(Kind::Wte, 0), b.w(Kind::Wpe, 0));
    b.launch(Kernel::EncoderForward, vec![p(encoded), p(idx), p(wte), p(wpe), int(bs), int(t), int(c)]);
    b.dropout(d, site(0, Site::Embedding), encoded, encoded);
    let first = b.layer_views(0);
    let (w, bias) = (b.w(Kind::Ln1W, 0), b.bias(Kind::Ln1B, 0));
    let args = vec![p(first.ln1), p(first.ln1_mean), p(first.ln1_rstd), p(encoded), p(w), opt(bias), int(n), int(c)];
    b.launch(Kernel::LayerNormForward, args);
    for l in 0..nl {
        let x = b.layer_views(l);
        let residual = if l == 0 { encoded } else { b.layer_views(l - 1).res3 };

        // attention branch: res2 = residual + drop(c_proj(gate ⊙ attn(ln_1(residual))))
        let (w, bias) = (b.w(Kind::QkvW, l), b.bias(Kind::QkvB, l));
        b.linear_forward(x.qkv, x.ln1, w, bias, c, 3 * c);
        if let (Some(g), Some(gate)) = (gates, x.gate) {
            let (kw, kb) = gate_kinds(b.cfg);
            let (w, bias) = (b.w(kw, l), b.bias(kb, l));
            b.linear_forward(gate, x.ln1, w, bias, c, g);
        }
        let dims = [int(bs), int(t), int(nh), int(hs)];
        b.launch(Kernel::AttentionPermute, [vec![p(x.q), p(x.k), p(x.v), p(x.qkv)], dims.to_vec()].concat());
        // preattᵀ (T × T) per head = op(k) · qᵀ: k's stored (HS × T) transposed, q's as stored
        let heads = |v: View| (v, hs, t * hs);
        b.attention_gemm((Trans::T, Trans::N), (t, t, hs), scale, heads(x.k), heads(x.q), (x.preatt, t, t * t));
        let sink = b.sink(l);
        let [zeta, gamma] = b.clip_args();
        let rows = vec![p(x.att), p(x.preatt), opt(sink), int(bs * nh), int(t), int(nh), zeta, gamma];
        b.launch(Kernel::AttnRowForward(rk), rows);
        b.dropout(d, site(l, Site::AttentionWeights), x.att_used, x.att);
        // yᵀ (HS × T) per head = vᵀ · attᵀ: both as stored
        b.attention_gemm((Trans::N, Trans::N), (hs, t, t), 1.0, heads(x.v), (x.att_used, t, t * t), heads(yh));
        b.launch(Kernel::AttentionUnpermute, [vec![p(x.atty), p(yh)], dims.to_vec()].concat());
        let proj_in = match (gates, x.gate, x.attg) {
            (Some(g), Some(gate), Some(attg)) => {
                b.launch(Kernel::GateForward, vec![p(attg), p(gate), p(x.atty), int(n), int(c), int(g)]);
                attg
            }
            _ => x.atty,
        };
        let (w, bias) = (b.w(Kind::AttProjW, l), b.bias(Kind::AttProjB, l));
        b.linear_forward(proj, proj_in, w, bias, c, c);
        b.dropout(d, site(l, Site::AttentionOut), proj, proj);
        let (w, bias) = (b.w(Kind::Ln2W, l), b.bias(Kind::Ln2B, l));
        let args = vec![p(x.res2), p(x.ln2), p(x.ln2_mean), p(x.ln2_rstd), p(residual), p(proj), p(w), opt(bias)];
        b.launch(Kernel::ResidualLayerNormForward, [args, vec![int(n), int(c)]].concat());

        // MLP branch: res3 = res2 + drop(c_proj(act(c_fc(ln_2(res2))))), then the next LayerNorm
        let (w, bias) = (b.w(Kind::FcW, l), b.bias(Kind::FcB, l));
        b.linear_forward(x.fch, x.ln2, w, bias, c, 4 * c);
        b.launch(Kernel::ActForward(act_kernel(b.cfg)), vec![p(x.hidden), p(x.fch), int(n * 4 * c)]);
        let (w, bias) = (b.w(Kind::FcProjW, l), b.bias(Kind::FcProjB, l));
        b.linear_forward(proj, x.hidden, w, bias, 4 * c, c);
        b.dropout(d, site(l, Site::MlpOut), proj, proj);
        let (out, mean, rstd, w, bias) = if l + 1 < nl {
            let nx = b.layer_views(l + 1);
            (nx.ln1, nx.ln1_mean, nx.ln1_rstd, b.w(Kind::Ln1W, l + 1), b.bias(Kind::Ln1B, l + 1))
        } else {
            let (lnf, mean, rstd) = (bf.lnf.sub(0, n * c), bf.lnf_mean.sub(0, n), bf.lnf_rstd.sub(0, n));
            (lnf, mean, rstd, b.w(Kind::LnfW, 0), b.bias(Kind::LnfB, 0))
        };
        let args = vec![p(x.res3), p(out), p(mean), p(rstd), p(x.res2), p(proj), p(w), opt(bias)];
        b.launch(Kernel::ResidualLayerNormForward, [args, vec![int(n), int(c)]].concat());
    }
    let (lnf, logits) = (bf.lnf.sub(0, n * c), bf.logits.sub(0, n * v));
    let head = b.w(head_kind(b.cfg), 0);
    b.linear_forward(logits, lnf, head, None, c, v);
    if targets {
        let (losses, targets) = (bf.losses.sub(0, n), bf.targets.sub(0, n));
        b.launch(Kernel::CrossEntropyForward, vec![p(losses), p(logits), p(targets), int(n), int(v)]);
    }
}

/// The classifier's weight: wte when tied (nanoGPT), else lm_head.
pub fn head_kind(cfg: &ModelConfig) -> Kind {
    if cfg.tie_weights {
        Kind::Wte
    } else {
        Kind::LmHead
    }
}

/// The weight and bias kinds of the gate's linear map (as `cpu::attention_gate::gate_kinds`).
pub fn gate_kinds(cfg: &ModelConfig) -> (Kind, Kind) {
    crate::engine::cpu::attention_gate::gate_kinds(cfg.attention)
}
