//! The GPU engine's buffers, allocated once for (max_batch, block_size): llm.c's layout, with every
//! activation a backward reads kept per layer (L, B·T, ·) instead of remade, and the backward's scratch
//! shared by the layers. `X` buffers are the plan's activation type; parameters have an f32 master copy
//! and an `X` copy the kernels and GEMMs read.

use super::super::kernel::RowKernel;
use super::super::plan::{Dtype, Plan, View};
use crate::config::ModelConfig;

/// Partial sums per column reduction (`Kernel::ColumnSumPartial`) and per gradient norm.
pub const PARTS: usize = 64;

/// Every buffer of the engine (see the module doc). Per-layer buffers hold L slices of their per-layer size.
#[derive(Clone, Debug)]
pub struct Bufs {
    pub max_b: usize,
    pub max_t: usize,
    // parameters and optimizer state (ParamLayout's order)
    pub params: View,
    pub params_x: View,
    pub grads: View,
    pub m: View,
    pub v: View,
    // inputs: token ids, and the positions of each token for wte's backward
    pub idx: View,
    pub targets: View,
    pub bucket_start: View,
    pub bucket_pos: View,
    pub bucket_token: View,
    // activations
    pub encoded: View,
    pub ln1: View,
    pub ln1_mean: View,
    pub ln1_rstd: View,
    pub qkv: View,
    pub qkvr: View,
    pub preatt: View,
    pub att: View,
    pub att_drop: Option<View>,
    pub yh: View,
    pub atty: View,
    pub gate: Option<View>,
    pub attg: Option<View>,
    pub proj: View,
    pub res2: View,
    pub ln2: View,
    pub ln2_mean: View,
    pub ln2_rstd: View,
    pub fch: View,
    pub hidden: View,
    pub res3: View,
    pub lnf: View,
    pub lnf_mean: View,
    pub lnf_rstd: View,
    pub logits: View,
    pub losses: View,
    // backward scratch
    pub dres: View,
    pub dproj: View,
    pub dln: View,
    pub dhidden: View,
    pub dattc: View,
    pub dgate: Option<View>,
    pub dyh: View,
    pub dqkvr: View,
    pub dqkv: View,
    pub datt: View,
    pub dpreatt: View,
    pub dnull: View,
    pub ln_rows: View,
    pub col_part: View,
    pub norm_part: View,
    /// Whether preatt is kept per layer (for the row rules whose backward reads the scores).
    pub preatt_per_layer: bool,
}

impl Bufs {
    /// Adds the buffers of `cfg` for batches of up to `max_b` to `plan`; `params` elements of parameters.
    pub fn new(plan: &mut Plan, cfg: &ModelConfig, params: usize, max_b: usize) -> Bufs {
        let (l, c, nh, v, t) = (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.block_size);
        let n = max_b * t; // tokens
        let tt = max_b * nh * t * t; // attention weights of one layer
        let g = cfg.attention.gate_groups(nh, c);
        let dropout = cfg.dropout > 0.0;
        let preatt_per_layer = RowKernel::of(cfg.attention).needs_scores();
        let mut x = |name: &str, len: usize| plan.buffer(name, Dtype::X, len);
        let (encoded, ln1, qkv, qkvr) =
            (x("encoded", n * c), x("ln1", l * n * c), x("qkv", l * n * 3 * c), x("qkvr", l * n * 3 * c));
        let preatt = x("preatt", if preatt_per_layer { l * tt } else { tt });
        let att = x("att", l * tt);
        let att_drop = dropout.then(|| x("att_drop", l * tt));
        let (yh, atty) = (x("yh", n * c), x("atty", l * n * c));
        let gate = g.map(|g| x("gate", l * n * g));
        let attg = g.map(|_| x("attg", l * n * c));
        let (proj, res2, ln2) = (x("proj", n * c), x("res2", l * n * c), x("ln2", l * n * c));
        let (fch, hidden, res3) = (x("fch", l * n * 4 * c), x("hidden", l * n * 4 * c), x("res3", l * n * c));
        let (lnf, logits) = (x("lnf", n * c), x("logits", n * v));
        let (dres, dproj, dln) = (x("dres", n * c), x("dproj", n * c), x("dln", n * c));
        let (dhidden, dattc) = (x("dhidden", n * 4 * c), x("dattc", n * c));
        let dgate = g.map(|g| x("dgate", n * g));
        let (dyh, dqkvr, dqkv) = (x("dyh", n * c), x("dqkvr", n * 3 * c), x("dqkv", n * 3 * c));
        let (datt, dpreatt, ln_rows) = (x("datt", tt), x("dpreatt", tt), x("ln_rows", n * c));
        let params_x = x("params_x", params);
        let mut f = |name: &str, len: usize| plan.buffer(name, Dtype::F32, len);
        let (params, grads, m, vv) =
            (f("params", params), f("grads", params), f("adam_m", params), f("adam_v", params));
        let (ln1_mean, ln1_rstd) = (f("ln1_mean", l * n), f("ln1_rstd", l * n));
        let (ln2_mean, ln2_rstd) = (f("ln2_mean", l * n), f("ln2_rstd", l * n));
        let (lnf_mean, lnf_rstd, losses) = (f("lnf_mean", n), f("lnf_rstd", n), f("losses", n));
        let dnull = f("dnull", max_b * nh * t);
        let col_part = f("col_part", PARTS * 4 * c);
        let norm_part = f("norm_part", PARTS);
        let mut u = |name: &str, len: usize| plan.buffer(name, Dtype::U32, len);
        let (idx, targets) = (u("idx", n), u("targets", n));
        let (bucket_start, bucket_pos, bucket_token) =
            (u("bucket_start", n + 1), u("bucket_pos", n), u("bucket_token", n));
        Bufs {
            max_b,
            max_t: t,
            params,
            params_x,
            grads,
            m,
            v: vv,
            idx,
            targets,
            bucket_start,
            bucket_pos,
            bucket_token,
            encoded,
            ln1,
            ln1_mean,
            ln1_rstd,
            qkv,
            qkvr,
            preatt,
            att,
            att_drop,
            yh,
            atty,
            gate,
            attg,
            proj,
            res2,
            ln2,
            ln2_mean,
            ln2_rstd,
            fch,
            hidden,
            res3,
            lnf,
            lnf_mean,
            lnf_rstd,
            logits,
            losses,
            dres,
            dproj,
            dln,
            dhidden,
            dattc,
            dgate,
            dyh,
            dqkvr,
            dqkv,
            datt,
            dpreatt,
            dnull,
            ln_rows,
            col_part,
            norm_part,
            preatt_per_layer,
        }
    }
}

/// Slice `l` of a per-layer buffer whose slices have `per` elements, cut to the first `used` of them
/// (a batch smaller than the buffers' maximum uses the start of each slice).
pub fn layer(v: View, l: usize, per: usize, used: usize) -> View {
    v.sub(l * per, per).sub(0, used)
}
