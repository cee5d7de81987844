//! The backward pass as plan ops, as `engine::cpu::pass::backward_shard` (the same order, the same
//! accumulation of ∂L/∂residual in `dres`), reading the activations the forward kept per layer instead
//! of remaking them. Parameter gradients accumulate (+=) in f32; LayerNorm and bias gradients are summed
//! over the batch's rows in a fixed order (`Builder::column_sum`), so that two runs are bitwise equal.

use super::super::kernel::{Kernel, RowKernel};
use super::super::plan::{Arg, Trans, View};
use super::forward::{act_kernel, gate_kinds, head_kind};
use super::{int, opt, p, Builder};
use crate::config::AttentionKind;
use crate::engine::dropout::{site, Dropout, Site};
use crate::engine::params::Kind;

impl Builder<'_> {
    /// dres += ∂L/∂ LayerNorm input; dw, db += ∂L/∂ weight, bias; from dout = ∂L/∂ output.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_backward(&mut self, dout: View, inp: View, (wk, bk): (Kind, Kind), l: usize, mean: View, rstd: View) {
        let (n, c) = (self.n(), self.cfg.n_embd);
        let (dres, rows) = (self.bufs.dres.sub(0, n * c), self.bufs.ln_rows.sub(0, n * c));
        let w = self.w(wk, l);
        let args = vec![p(dres), p(rows), p(dout), p(inp), p(w), p(mean), p(rstd), int(n), int(c)];
        self.launch(Kernel::LayerNormBackward, args);
        self.column_sum(self.g(wk, l), rows, c);
        if self.bias(bk, l).is_some() {
            self.column_sum(self.g(bk, l), dout, c);
        }
    }

    /// The gradient of a dropout site's output: drop(g) into `buf`, or g itself without dropout.
    fn dropped(&mut self, d: Option<Dropout>, s: u64, buf: View, g: View) -> View {
        match d {
            Some(_) => {
                self.dropout(d, s, buf, g);
                buf
            }
            None => g,
        }
    }
}

/// ∂(loss_scale · mean loss)/∂params of the last forward into the gradients (+=); `dloss` is
/// loss_scale / (B·T), ∂L/∂loss_n of every token.
pub fn backward(b: &mut Builder, d: Option<Dropout>, dloss: f32, buckets: usize) {
    let (c, nh, nl, v) = (b.cfg.n_embd, b.cfg.n_head, b.cfg.n_layer, b.cfg.vocab_size);
    let (n, bs, t, hs) = (b.n(), b.b, b.t, c / nh);
    let bf = b.bufs;
    let gates = b.cfg.attention.gate_groups(nh, c);
    let rk = RowKernel::of(b.cfg.attention);
    let scale = 1.0 / (hs as f32).sqrt();
    let tt = bs * nh * t * t;
    let (dres, dln, dproj_buf) = (bf.dres.sub(0, n * c), bf.dln.sub(0, n * c), bf.dproj.sub(0, n * c));
    let (dhidden, dyh) = (bf.dhidden.sub(0, n * 4 * c), bf.dyh.sub(0, n * c));
    let dqkvr = bf.dqkvr.sub(0, 3 * n * c);
    let (dq, dk, dv) = (dqkvr.sub(0, n * c), dqkvr.sub(n * c, n * c), dqkvr.sub(2 * n * c, n * c));
    let (dqkv, datt, dpreatt) = (bf.dqkv.sub(0, n * 3 * c), bf.datt.sub(0, tt), bf.dpreatt.sub(0, tt));
    let dnull = bf.dnull.sub(0, bs * nh * t);
    let (logits, targets) = (bf.logits.sub(0, n * v), bf.targets.sub(0, n));
    let lnf = bf.lnf.sub(0, n * c);
    let encoded = bf.encoded.sub(0, n * c);
    let heads = |v: View| (v, hs, t * hs);

    // ∂L/∂logits over the logits, then the classifier
    b.launch(Kernel::CrossEntropyBackward, vec![p(logits), p(targets), Arg::F32(dloss), int(n), int(v)]);
    let (hk, head) = (head_kind(b.cfg), b.w(head_kind(b.cfg), 0));
    b.linear_backward(dln, false, b.g(hk, 0), None, logits, lnf, head, c, v);
    b.zero(dres);
    let last = b.layer_views(nl - 1).res3;
    let (mean, rstd) = (bf.lnf_mean.sub(0, n), bf.lnf_rstd.sub(0, n));
    b.layernorm_backward(dln, last, (Kind::LnfW, Kind::LnfB), 0, mean, rstd);

    for l in (0..nl).rev() {
        let x = b.layer_views(l);
        let residual = if l == 0 { encoded } else { b.layer_views(l - 1).res3 };

        // MLP branch
        let dproj = b.dropped(d, site(l, Site::MlpOut), dproj_buf, dres);
        let (dw, db) = (b.g(Kind::FcProjW, l), b.bias(Kind::FcProjB, l).map(|_| b.g(Kind::FcProjB, l)));
        b.linear_backward(dhidden, false, dw, db, dproj, x.hidden, b.w(Kind::FcProjW, l), 4 * c, c);
        b.launch(Kernel::ActBackward(act_kernel(b.cfg)), vec![p(dhidden), p(x.fch), int(n * 4 * c)]);
        let (dw, db) = (b.g(Kind::FcW, l), b.bias(Kind::FcB, l).map(|_| b.g(Kind::FcB, l)));
        b.linear_backward(dln, false, dw, db, dhidden, x.ln2, b.w(Kind::FcW, l), c, 4 * c);
        b.layernorm_backward(dln, x.res2, (Kind::Ln2W, Kind::Ln2B), l, x.ln2_mean, x.ln2_rstd);

        // attention branch: c_proj, the gate, the core, c_attn (and the gate's linear map)
        let dproj = b.dropped(d, site(l, Site::AttentionOut), dproj_buf, dres);
        let proj_in = x.attg.unwrap_or(x.atty);
        let (dw, db) = (b.g(Kind::AttProjW, l), b.bias(Kind::AttProjB, l).map(|_| b.g(Kind::AttProjB, l)));
        b.linear_backward(dln, false, dw, db, dproj, proj_in, b.w(Kind::AttProjW, l), c, c);
        let dcore = match (gates, x.gate, bf.dgate) {
            (Some(g), Some(gate), Some(dgate)) => {
                let (dattc, dgate) = (bf.dattc.sub(0, n * c), dgate.sub(0, n * g));
                b.zero(dattc);
                let args = vec![p(dattc), p(dgate), p(dln), p(x.atty), p(gate), int(n), int(c), int(g)];
                b.launch(Kernel::GateBackward, args);
                dattc
            }
            _ => dln,
        };
        let dims = [int(bs), int(t), int(nh), int(hs)];
        b.launch(Kernel::AttentionUnpermuteBackward, [vec![p(dyh), p(dcore)], dims.to_vec()].concat());
        // dattᵀ = op(v) · dyᵀ (as preatt's);  dvᵀ (HS × T) = dyᵀ · op(att_used) (att's stored, transposed)
        b.attention_gemm((Trans::T, Trans::N), (t, t, hs), 1.0, heads(x.v), heads(dyh), (datt, t, t * t));
        b.attention_gemm((Trans::N, Trans::T), (hs, t, t), 1.0, heads(dyh), (x.att_used, t, t * t), heads(dv));
        b.dropout(d, site(l, Site::AttentionWeights), datt, datt);
        let sink = b.sink(l);
        let dnull_arg = opt(sink.map(|_| dnull));
        // the scores for the rules that read them; any other X buffer (unread) for the rest
        let scores = if rk.needs_scores() { x.preatt } else { bf.preatt.sub(0, tt) };
        let [zeta, gamma] = b.clip_args();
        let args = vec![p(dpreatt), dnull_arg, p(datt), p(x.att), p(scores), opt(sink), int(bs * nh), int(t), int(nh)];
        b.launch(Kernel::AttnRowBackward(rk), [args, vec![zeta, gamma]].concat());
        // dqᵀ = scale · kᵀ · dpreattᵀ (as y's);  dkᵀ = scale · qᵀ · op(dpreatt) (transposed)
        b.attention_gemm((Trans::N, Trans::N), (hs, t, t), scale, heads(x.k), (dpreatt, t, t * t), heads(dq));
        b.attention_gemm((Trans::N, Trans::T), (hs, t, t), scale, heads(x.q), (dpreatt, t, t * t), heads(dk));
        b.launch(Kernel::AttentionPermuteBackward, [vec![p(dqkv), p(dq), p(dk), p(dv)], dims.to_vec()].concat());
        if b.cfg.attention == AttentionKind::Sink {
            b.launch(Kernel::SinkBackward, vec![p(b.g(Kind::Sink, l)), p(dnull), int(bs), int(nh), int(t)]);
        }
        let (dw, db) = (b.g(Kind::QkvW, l), b.bias(Kind::QkvB, l).map(|_| b.g(Kind::QkvB, l)));
        b.linear_backward(dln, false, dw, db, dqkv, x.ln1, b.w(Kind::QkvW, l), c, 3 * c);
        if let (Some(g), Some(dgate)) = (gates, bf.dgate) {
            let (kw, kb) = gate_kinds(b.cfg);
            let (dw, db) = (b.g(kw, l), b.bias(kb, l).map(|_| b.g(kb, l)));
            b.linear_backward(dln, true, dw, db, dgate.sub(0, n * g), x.ln1, b.w(kw, l), c, g);
        }
        b.layernorm_backward(dln, residual, (Kind::Ln1W, Kind::Ln1B), l, x.ln1_mean, x.ln1_rstd);
    }
    b.dropout(d, site(0, Site::Embedding), dres, dres);
    let (start, pos, tok) = (bf.bucket_start, bf.bucket_pos.sub(0, n), bf.bucket_token);
    let args = vec![p(b.g(Kind::Wte, 0)), p(dres), p(start), p(pos), p(tok), int(buckets), int(c)];
    b.launch(Kernel::EncoderBackwardWte, args);
    b.launch(Kernel::EncoderBackwardWpe, vec![p(b.g(Kind::Wpe, 0)), p(dres), int(bs), int(t), int(c)]);
}

/// The positions of each token of `idx`, grouped by token in increasing order, positions increasing
/// within a token: (bucket_start (buckets + 1), bucket_pos (B·T), bucket_token (buckets)), for the
/// deterministic wte backward (`Kernel::EncoderBackwardWte`).
pub fn buckets(idx: &[u32], vocab: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let mut count = vec![0u32; vocab + 1];
    for &i in idx {
        count[i as usize + 1] += 1;
    }
    for k in 0..vocab {
        count[k + 1] += count[k];
    }
    let mut next = count.clone();
    let mut pos = vec![0u32; idx.len()];
    for (j, &i) in idx.iter().enumerate() {
        pos[next[i as usize] as usize] = j as u32;
        next[i as usize] += 1;
    }
    let tokens: Vec<u32> = (0..vocab as u32).filter(|&k| count[k as usize + 1] > count[k as usize]).collect();
    let mut start: Vec<u32> = tokens.iter().map(|&k| count[k as usize]).collect();
    start.push(idx.len() as u32);
    (start, pos, tokens)
}
