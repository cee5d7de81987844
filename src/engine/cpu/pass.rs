//! The model's forward and backward pass over one shard of the batch: one kernel call per line, as
//! llm.c's `gpt2_forward` and `gpt2_backward`. With one shard the shard is the whole batch.
//!
//!   x = drop(wte[idx] + wpe[0..T))                                   (B, T, C)
//!   per block:  x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
//!   attn(h) = c_proj(gate(h) ⊙ core(c_attn(h)))   (gate ≡ 1 except for the gated variants)
//!   logits = ln_f(x) @ lm_headᵀ    (B, T, V), lm_head = wte when tied (nanoGPT), its own tensor when not
//!   loss = mean_n cross_entropy(logits_n, target_n)
//!
//! Every LayerNorm after the first is fused with the residual add before it. Backward remakes the
//! LayerNorm outputs and gelu(c_fc) (or relu(c_fc): `gelu` below is the MLP's activation, whichever it
//! is) from what forward kept. The residual stream's gradient `dres`
//! accumulates: each LayerNorm backward adds its input gradient to it, which is the backward of the
//! residual add (x = x + f(x) passes ∂L/∂x through unchanged and adds the branch's part).

use super::acts::{Acts, GradActs, Layer, ShardState};
use super::attention::{attention_backward, attention_forward, sink_backward, AttnDropout, AttnMask, Variant};
use super::attention_fused;
use super::attention_gate::{gate_backward, gate_forward, gate_kinds, gate_linear_backward, gate_linear_forward};
use super::crossentropy::{crossentropy_backward, crossentropy_forward};
use super::encoder::{encoder_backward, encoder_forward};
use super::gelu::{gelu_backward_from_grad, Activation};
use super::layernorm::{layernorm_backward, layernorm_forward, layernorm_recompute, residual_layernorm_forward};
use super::matmul::{matmul_backward, matmul_backward_over_input, matmul_forward, Dinp};
use super::probe::{Linear, Point, Tap};
use super::real::Real;
use super::shard::Shard;
use crate::config::{AttentionKind, ModelConfig};
use crate::engine::dropout::{dropout_backward, dropout_backward_in_place, dropout_forward, site, Dropout, Site};
use crate::engine::params::{Kind, ParamLayout};
use crate::engine::profile::Op;

/// What every shard reads.
pub(crate) struct Ctx<'a, F> {
    pub cfg: &'a ModelConfig,
    pub lay: &'a ParamLayout,
    pub p: &'a [F],
    pub t: usize,
    pub idx: &'a [u32],             // (B, T)
    pub targets: Option<&'a [u32]>, // (B, T)
    pub dropout: Option<Dropout>,
    /// One shard: the kernels' GEMMs use the whole pool.
    pub parallel: bool,
    /// Run the reference attention kernel, which keeps the probabilities.
    pub store_attention: bool,
}

impl<F: Real> Ctx<'_, F> {
    /// The parameter tensor of kind k in layer l.
    fn w(&self, k: Kind, l: usize) -> &[F] {
        &self.p[self.lay.layer_range(k, l, self.cfg.n_layer)]
    }

    /// A model-wide parameter tensor: wte, wpe, ln_f, lm_head.
    fn whole(&self, k: Kind) -> &[F] {
        &self.p[self.lay.range(k)]
    }

    /// The bias of kind k in layer l, if the model has biases.
    fn b(&self, k: Kind, l: usize) -> Option<&[F]> {
        self.cfg.bias.then(|| self.w(k, l))
    }

    /// The gate's linear map of layer l: weight and bias (no bias for `outgate` without biases).
    fn gate(&self, l: usize) -> (&[F], Option<&[F]>) {
        let (w, b) = gate_kinds(self.cfg.attention);
        let bias = self.w(b, l);
        (self.w(w, l), (!bias.is_empty()).then_some(bias))
    }

    /// The MLP activation's kernels (`activation = "gelu" | "relu"`, the GELU in the form `gelu = "erf" |
    /// "tanh"`): the one place that chooses them.
    fn gelu(&self) -> Activation<F> {
        Activation::of(self.cfg.activation, self.cfg.gelu)
    }

    /// The classifier's weight (V, C): wte when tied (nanoGPT), else lm_head.
    fn head(&self) -> Kind {
        if self.cfg.tie_weights {
            Kind::Wte
        } else {
            Kind::LmHead
        }
    }

    fn variant(&self, l: usize) -> Variant<'_, F> {
        Variant::of(self.cfg, self.w(Kind::Sink, l))
    }

    fn attn_dropout(&self, l: usize, first_seq: usize) -> AttnDropout<'_> {
        self.dropout.as_ref().map(|d| AttnMask { dropout: d, site: site(l, Site::AttentionWeights), first_seq })
    }

    fn layer(&self, l: usize, b: usize) -> Layer {
        let (c, nh, t) = (self.cfg.n_embd, self.cfg.n_head, self.t);
        Layer::new(l, b * t, c, self.cfg.attention.gate_groups(nh, c).unwrap_or(0), b * nh * t)
    }
}

/// The forward pass over one shard's sequences (all of the batch when there is one shard).
pub(crate) fn forward_shard<F: Real>(
    cx: &Ctx<F>,
    a: Acts<&mut [F]>,
    st: &mut ShardState<F>,
    sh: Shard,
    mut tap: Tap<'_, '_, F>,
) {
    let (c, v, nh, nl, t) = (cx.cfg.n_embd, cx.cfg.vocab_size, cx.cfg.n_head, cx.cfg.n_layer, cx.t);
    let (b, seq0) = (sh.seqs.len(), sh.seqs.start);
    let n = b * t; // tokens of this shard
    let first = seq0 * t * c; // this shard's first element of a (B, T, C) tensor of the whole batch
    let idx = &cx.idx[seq0 * t..(seq0 + b) * t];
    let gates = cx.cfg.attention.gate_groups(nh, c);
    let (d, par) = (cx.dropout.as_ref(), cx.parallel);
    let ShardState { attn_scratch, profile: pf, .. } = st;
    let (wte, wpe) = (cx.whole(Kind::Wte), cx.whole(Kind::Wpe));

    pf.fwd(Op::Encoder, || encoder_forward(a.encoded, idx, wte, wpe, b, t, c));
    pf.fwd(Op::Dropout, || dropout_forward(d, site(0, Site::Embedding), first, &mut a.encoded[..n * c]));
    tap.observe(0, Point::Embedding, &a.encoded[..n * c]);
    let (mean, rstd) = (&mut a.ln1_mean[..n], &mut a.ln1_rstd[..n]);
    let (w, bias) = (cx.w(Kind::Ln1W, 0), cx.b(Kind::Ln1B, 0));
    pf.fwd(Op::LayerNorm, || layernorm_forward(a.ln, mean, rstd, &a.encoded[..n * c], w, bias, n, c));
    for l in 0..nl {
        let r = cx.layer(l, b);
        let residual: &[F] = if l == 0 { &a.encoded[..n * c] } else { &a.residual3[cx.layer(l - 1, b).c()] };

        // attention branch: residual2 = residual + drop(c_proj(gate ⊙ attn(ln_1(residual))))
        tap.observe(l, Point::Ln1, &a.ln[..n * c]);
        tap.linear_input(l, Linear::Qkv, &mut a.ln[..n * c]);
        let (w, bias) = (cx.w(Kind::QkvW, l), cx.b(Kind::QkvB, l));
        pf.fwd(Op::Matmul, || matmul_forward(&mut a.qkv[r.c3()], a.ln, w, bias, n, c, 3 * c, par));
        tap.observe(l, Point::Qkv, &a.qkv[r.c3()]);
        if let Some(g) = gates {
            let (w, bias) = cx.gate(l);
            pf.fwd(Op::Matmul, || gate_linear_forward(&mut a.gate[r.gates()], a.ln, w, bias, n, c, g, par));
        }
        let (variant, drop) = (cx.variant(l), cx.attn_dropout(l, seq0));
        let (atty, qkv) = (&mut a.atty[r.c()], &a.qkv[r.c3()]);
        if cx.store_attention {
            let att = &mut a.att[r.pairs(t)];
            pf.fwd(Op::Attention, || attention_forward(atty, att, qkv, &variant, drop, b, t, c, nh));
        } else {
            let (lse, scratch) = (&mut a.lse[r.heads()], &mut *attn_scratch);
            pf.fwd(Op::Attention, || {
                attention_fused::attention_forward(atty, lse, qkv, &variant, drop, scratch, b, t, c, nh)
            });
        }
        let proj_in: &mut [F] = match gates {
            Some(g) => {
                let (attg, gate) = (&mut a.attg[r.c()], &mut a.gate[r.gates()]);
                pf.fwd(Op::Attention, || gate_forward(attg, gate, &a.atty[r.c()], n, c, g));
                tap.observe(l, Point::Gate, gate);
                attg
            }
            None => &mut a.atty[r.c()],
        };
        tap.linear_input(l, Linear::AttnProj, proj_in);
        let (w, bias) = (cx.w(Kind::AttProjW, l), cx.b(Kind::AttProjB, l));
        pf.fwd(Op::Matmul, || matmul_forward(a.proj, proj_in, w, bias, n, c, c, par));
        pf.fwd(Op::Dropout, || dropout_forward(d, site(l, Site::AttentionOut), first, &mut a.proj[..n * c]));
        tap.observe(l, Point::AttnOut, &a.proj[..n * c]);
        let (res2, mean, rstd) = (&mut a.residual2[r.c()], &mut a.ln2_mean[r.rows()], &mut a.ln2_rstd[r.rows()]);
        let (w, bias) = (cx.w(Kind::Ln2W, l), cx.b(Kind::Ln2B, l));
        let proj = &a.proj[..n * c];
        pf.fwd(Op::Residual, || residual_layernorm_forward(res2, a.ln, mean, rstd, residual, proj, w, bias, n, c));

        // MLP branch: residual3 = residual2 + drop(c_proj(gelu(c_fc(ln_2(residual2)))))
        tap.observe(l, Point::Ln2, &a.ln[..n * c]);
        tap.linear_input(l, Linear::Fc, &mut a.ln[..n * c]);
        let (w, bias) = (cx.w(Kind::FcW, l), cx.b(Kind::FcB, l));
        pf.fwd(Op::Matmul, || matmul_forward(&mut a.fch[r.c4()], a.ln, w, bias, n, c, 4 * c, par));
        pf.fwd(Op::Gelu, || (cx.gelu().forward)(&mut a.hidden[..n * 4 * c], &a.fch[r.c4()]));
        tap.observe(l, Point::MlpHidden, &a.hidden[..n * 4 * c]);
        tap.linear_input(l, Linear::FcProj, &mut a.hidden[..n * 4 * c]);
        let (w, bias) = (cx.w(Kind::FcProjW, l), cx.b(Kind::FcProjB, l));
        pf.fwd(Op::Matmul, || matmul_forward(a.proj, a.hidden, w, bias, n, 4 * c, c, par));
        pf.fwd(Op::Dropout, || dropout_forward(d, site(l, Site::MlpOut), first, &mut a.proj[..n * c]));
        tap.observe(l, Point::MlpOut, &a.proj[..n * c]);
        // residual3 = residual2 + MLP output, with the next LayerNorm: ln_1 of layer l + 1, or ln_f
        let (res3, res2, proj) = (&mut a.residual3[r.c()], &a.residual2[r.c()], &a.proj[..n * c]);
        let (out, mean, rstd, w, bias) = if l + 1 < nl {
            let next = r.next().rows();
            (
                &mut *a.ln,
                &mut a.ln1_mean[next.clone()],
                &mut a.ln1_rstd[next],
                cx.w(Kind::Ln1W, l + 1),
                cx.b(Kind::Ln1B, l + 1),
            )
        } else {
            let bias = cx.cfg.bias.then(|| cx.whole(Kind::LnfB));
            (&mut *a.lnf, &mut *a.lnf_mean, &mut *a.lnf_rstd, cx.whole(Kind::LnfW), bias)
        };
        pf.fwd(Op::Residual, || residual_layernorm_forward(res3, out, mean, rstd, res2, proj, w, bias, n, c));
        tap.observe(l, Point::Residual, &a.residual3[r.c()]);
    }
    tap.observe(nl, Point::LnF, &a.lnf[..n * c]);
    let head = cx.whole(cx.head());
    pf.fwd(Op::Matmul, || matmul_forward(a.logits, a.lnf, head, None, n, c, v, par));
    if let Some(y) = cx.targets {
        let y = &y[seq0 * t..(seq0 + b) * t];
        pf.fwd(Op::CrossEntropy, || crossentropy_forward(a.losses, a.logits, y, n, v));
    }
}

/// The backward pass over one shard's sequences, into the shard's gradients `st.grads`. `dloss` is
/// ∂L/∂loss_n of every position (loss_scale / (B·T) of the whole batch).
pub(crate) fn backward_shard<F: Real>(
    cx: &Ctx<F>,
    a: Acts<&mut [F]>,
    g: GradActs<&mut [F]>,
    st: &mut ShardState<F>,
    sh: Shard,
    dloss: F,
) {
    let (c, v, nh, nl, t) = (cx.cfg.n_embd, cx.cfg.vocab_size, cx.cfg.n_head, cx.cfg.n_layer, cx.t);
    let (b, seq0) = (sh.seqs.len(), sh.seqs.start);
    let n = b * t;
    let first = seq0 * t * c;
    let idx = &cx.idx[seq0 * t..(seq0 + b) * t];
    let targets = &cx.targets.expect("backward has targets")[seq0 * t..(seq0 + b) * t];
    let (lay, par) = (cx.lay, cx.parallel);
    let gates = cx.cfg.attention.gate_groups(nh, c);
    let d = cx.dropout.as_ref();
    let ShardState { grads, ln_scratch, attn_scratch, profile: pf } = st;
    let has_bias = cx.cfg.bias;
    let grad = GradPair { lay, nl, has_bias };
    let dres = &mut g.dresidual[..n * c]; // ∂L/∂ residual stream, accumulated through the layers

    let dlogits = &mut a.logits[..n * v]; // ∂L/∂logits written over the logits
    pf.bwd(Op::CrossEntropy, || crossentropy_backward(dlogits, targets, dloss, n, v));
    let (dhead, head) = (&mut grads[lay.range(cx.head())], cx.whole(cx.head()));
    pf.bwd(Op::Matmul, || matmul_backward(g.dln, Dinp::Write, dhead, None, dlogits, a.lnf, head, n, c, v, par));
    dres.fill(F::ZERO);
    let last = &a.residual3[cx.layer(nl - 1, b).c()];
    let (dw, db) = split_pair(grads, lay.range(Kind::LnfW), lay.range(Kind::LnfB), has_bias);
    let (w, mean, rstd) = (cx.whole(Kind::LnfW), &*a.lnf_mean, &*a.lnf_rstd);
    let dln = &g.dln[..n * c];
    pf.bwd(Op::LayerNorm, || layernorm_backward(dres, dw, db, dln, last, w, mean, rstd, n, c, ln_scratch));

    for l in (0..nl).rev() {
        let r = cx.layer(l, b);
        let residual: &[F] = if l == 0 { &a.encoded[..n * c] } else { &a.residual3[cx.layer(l - 1, b).c()] };

        // MLP branch: residual3 = residual2 + drop(c_proj(gelu(c_fc(ln_2(residual2)))))
        let site_out = site(l, Site::MlpOut);
        let dproj = pf.bwd(Op::Dropout, || dropout_backward(g.dproj, dres, d, site_out, first));
        // gelu(fch) remade for c_proj's weight gradient, and fch overwritten with gelu'(fch)
        pf.bwd(Op::Gelu, || (cx.gelu().remake_with_grad)(&mut a.hidden[..n * 4 * c], &mut a.fch[r.c4()]));
        let (dw, db) = grad.of(grads, Kind::FcProjW, Kind::FcProjB, l);
        let w = cx.w(Kind::FcProjW, l);
        pf.bwd(Op::Matmul, || matmul_backward_over_input(a.hidden, dw, db, dproj, w, n, 4 * c, c, par));
        let dfch = &mut a.hidden[..n * 4 * c]; // ∂L/∂ gelu output, made ∂L/∂ c_fc output in place
        pf.bwd(Op::Gelu, || gelu_backward_from_grad(dfch, &a.fch[r.c4()]));
        let (w2, b2) = (cx.w(Kind::Ln2W, l), cx.b(Kind::Ln2B, l));
        let (res2, mean, rstd) = (&a.residual2[r.c()], &a.ln2_mean[r.rows()], &a.ln2_rstd[r.rows()]);
        pf.bwd(Op::LayerNorm, || layernorm_recompute(a.ln, res2, mean, rstd, w2, b2, n, c));
        let (dw, db) = grad.of(grads, Kind::FcW, Kind::FcB, l);
        let (w, ln) = (cx.w(Kind::FcW, l), &a.ln[..n * c]);
        pf.bwd(Op::Matmul, || matmul_backward(g.dln, Dinp::Write, dw, db, dfch, ln, w, n, c, 4 * c, par));
        let (dw, db) = grad.of(grads, Kind::Ln2W, Kind::Ln2B, l);
        let dln = &g.dln[..n * c];
        pf.bwd(Op::LayerNorm, || layernorm_backward(dres, dw, db, dln, res2, w2, mean, rstd, n, c, ln_scratch));

        // attention branch: residual2 = residual + drop(c_proj(gate ⊙ attn(ln_1(residual))))
        let site_out = site(l, Site::AttentionOut);
        let dproj = pf.bwd(Op::Dropout, || dropout_backward(g.dproj, dres, d, site_out, first));
        let datty = &mut g.dln[..n * c]; // ∂L/∂ c_proj input, in dln's buffer
        let (dw, db) = grad.of(grads, Kind::AttProjW, Kind::AttProjB, l);
        let proj_in = if gates.is_some() { &a.attg[r.c()] } else { &a.atty[r.c()] };
        let w = cx.w(Kind::AttProjW, l);
        pf.bwd(Op::Matmul, || matmul_backward(datty, Dinp::Write, dw, db, dproj, proj_in, w, n, c, c, par));
        // through the gate: ∂L/∂(core output) into dattc, ∂L/∂(gate logits) into dgate
        let dcore: &[F] = match gates {
            Some(gg) => {
                let (dattc, dgate) = (&mut g.dattc[..n * c], &mut g.dgate[..n * gg]);
                dattc.fill(F::ZERO);
                let (atty, gate) = (&a.atty[r.c()], &a.gate[r.gates()]);
                pf.bwd(Op::Attention, || gate_backward(dattc, dgate, &g.dln[..n * c], atty, gate, n, c, gg));
                &g.dattc[..n * c]
            }
            None => &g.dln[..n * c],
        };
        let dqkv = &mut g.dqkv[..n * 3 * c];
        dqkv.fill(F::ZERO);
        let (variant, drop) = (cx.variant(l), cx.attn_dropout(l, seq0));
        let sink = cx.cfg.attention == AttentionKind::Sink;
        let dnull = sink.then(|| &mut g.dnull[..b * nh]);
        let qkv = &a.qkv[r.c3()];
        if cx.store_attention {
            let (att, row) = (&a.att[r.pairs(t)], &mut *g.datt_row);
            pf.bwd(Op::Attention, || {
                attention_backward(dqkv, dnull, row, dcore, qkv, att, &variant, drop, b, t, c, nh)
            });
        } else {
            let (lse, scratch) = (&a.lse[r.heads()], &mut *attn_scratch);
            pf.bwd(Op::Attention, || {
                attention_fused::attention_backward(dqkv, dnull, dcore, qkv, lse, &variant, drop, scratch, b, t, c, nh)
            });
        }
        if sink {
            sink_backward(&mut grads[lay.layer_range(Kind::Sink, l, nl)], &g.dnull[..b * nh], b, nh);
        }
        let (w1, b1) = (cx.w(Kind::Ln1W, l), cx.b(Kind::Ln1B, l));
        let (mean, rstd) = (&a.ln1_mean[r.rows()], &a.ln1_rstd[r.rows()]);
        pf.bwd(Op::LayerNorm, || layernorm_recompute(a.ln, residual, mean, rstd, w1, b1, n, c));
        let (dw, db) = grad.of(grads, Kind::QkvW, Kind::QkvB, l);
        let (w, ln, dqkv) = (cx.w(Kind::QkvW, l), &a.ln[..n * c], &g.dqkv[..n * 3 * c]);
        pf.bwd(Op::Matmul, || matmul_backward(g.dln, Dinp::Write, dw, db, dqkv, ln, w, n, c, 3 * c, par));
        if let Some(gg) = gates {
            let (kw, kb) = gate_kinds(cx.cfg.attention);
            let (dw, db) = split_pair(grads, lay.layer_range(kw, l, nl), lay.layer_range(kb, l, nl), true);
            let (w, dgate) = (cx.w(kw, l), &g.dgate[..n * gg]);
            pf.bwd(Op::Matmul, || gate_linear_backward(g.dln, dw, db, dgate, ln, w, n, c, gg, par));
        }
        let (dw, db) = grad.of(grads, Kind::Ln1W, Kind::Ln1B, l);
        let dln = &g.dln[..n * c];
        pf.bwd(Op::LayerNorm, || layernorm_backward(dres, dw, db, dln, residual, w1, mean, rstd, n, c, ln_scratch));
    }
    pf.bwd(Op::Dropout, || dropout_backward_in_place(d, site(0, Site::Embedding), first, dres));
    let (dwte, dwpe) = split_pair(grads, lay.range(Kind::Wte), lay.range(Kind::Wpe), true);
    let dwpe = dwpe.expect("wpe always exists");
    pf.bwd(Op::Encoder, || encoder_backward(dwte, dwpe, dres, idx, b, t, c));
}

/// ∂L/∂W and ∂L/∂b of a layer's weight and bias kinds (no bias without biases).
struct GradPair<'a> {
    lay: &'a ParamLayout,
    nl: usize,
    has_bias: bool,
}

impl GradPair<'_> {
    fn of<'g, F>(&self, grads: &'g mut [F], kw: Kind, kb: Kind, l: usize) -> (&'g mut [F], Option<&'g mut [F]>) {
        let (w, b) = (self.lay.layer_range(kw, l, self.nl), self.lay.layer_range(kb, l, self.nl));
        split_pair(grads, w, b, self.has_bias)
    }
}

/// Two disjoint mutable ranges of the gradient buffer (a weight and its bias); the second is `None`
/// when the model has no biases (or the tensor is empty). `first` must come before `second`.
fn split_pair<F>(
    buf: &mut [F],
    first: std::ops::Range<usize>,
    second: std::ops::Range<usize>,
    want_second: bool,
) -> (&mut [F], Option<&mut [F]>) {
    debug_assert!(first.end <= second.start || second.is_empty());
    let (lo, hi) = buf.split_at_mut(first.end);
    let a = &mut lo[first.clone()];
    let b = (want_second && !second.is_empty()).then(|| &mut hi[second.start - first.end..second.end - first.end]);
    (a, b)
}
