//! The GPT of nanoGPT's `model.py`, as explicit forward and backward passes over preallocated buffers.
//!
//!   x = drop(wte[idx] + wpe[0..T))                                   (B, T, C)
//!   per block:  x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
//!   attn(h) = c_proj(gate(h) ⊙ core(c_attn(h)))   (gate ≡ 1 except for the gated variants)
//!   logits = ln_f(x) @ wte^T                                           (B, T, V), lm_head tied to wte
//!   loss = mean_n cross_entropy(logits_n, target_n)
//!
//! Parameters and gradients are one flat buffer each (see `params`); every activation buffer is sized
//! once for (max_batch, block_size), so a training step allocates nothing. The batch runs as one shard
//! per worker thread (see `shard`); each shard's pass below reads as the whole model's.

use super::attention::{attention_backward, attention_forward, backward_scratch, AttnDropout, AttnMask, Variant};
use super::attention_fused;
use super::attention_gate::{gate_backward, gate_forward};
use super::crossentropy::{crossentropy_backward, crossentropy_forward};
use super::dropout::{site, Dropout, Site};
use super::encoder::{encoder_backward, encoder_forward};
use super::gelu::{gelu_backward_from_grad, gelu_forward, gelu_remake_with_grad};
use super::layernorm::{layernorm_backward, layernorm_forward, layernorm_recompute, residual_layernorm_forward};
use super::matmul::{matmul_backward, matmul_backward_over_input, matmul_forward};
use super::params::{init_params, Kind, ParamLayout};
use super::profile::{Op, Profile};
use super::real::Real;
use super::shard::{for_each_shard, on_pool, Shard};
use crate::config::{AttentionKind, ModelConfig};
use crate::rng::Rng;
use crate::timed;
use crate::{Error, Result};

/// The inputs of the four Linear layers of a block (the lm_head is not among them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Linear {
    /// attn.c_attn, input ln_1(x) (B, T, C). The gated variants' attn.c_gate / attn.c_outgate read the
    /// same tensor after this hook: one input, one quantizer.
    Qkv,
    /// attn.c_proj, input the concatenated head outputs (B, T, C), after the gate of the gated variants
    AttnProj,
    /// mlp.c_fc, input ln_2(x) (B, T, C)
    Fc,
    /// mlp.c_proj, input gelu(c_fc(.)) (B, T, 4C)
    FcProj,
}

/// Activations that a probe can observe during a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// the block input of layer 0: wte[idx] + wpe (after dropout) (B, T, C)
    Embedding,
    /// ln_1 output (B, T, C)
    Ln1,
    /// gate values σ(z) of the gated variants (B, T, G), G = n_head (`gated`) or C (`outgate`); not
    /// observed for the other variants
    Gate,
    /// attention output after c_proj (and dropout), before the residual add (B, T, C)
    AttnOut,
    /// ln_2 output (B, T, C)
    Ln2,
    /// MLP hidden after GELU (B, T, 4C)
    MlpHidden,
    /// MLP output after c_proj (and dropout), before the residual add (B, T, C)
    MlpOut,
    /// residual stream after the block (B, T, C)
    Residual,
    /// ln_f output (B, T, C); reported with layer = n_layer
    LnF,
}

/// A hook into the forward pass for analysis and fake quantization. Training passes none; the hook can
/// only see activations and change the inputs of Linear layers, never what the trainer does.
pub trait Probe<F = f32>: Send {
    /// The input of `linear` in block `layer`, just before the matmul; may be modified in place.
    fn linear_input(&mut self, _layer: usize, _linear: Linear, _x: &mut [F]) {}
    /// An activation, for observation.
    fn observe(&mut self, _layer: usize, _point: Point, _x: &[F]) {}
}

crate::buffers! {
    /// Forward activations, sized for (max_batch, block_size); per-layer ones hold L copies. Laid out by
    /// shard (see `shard`): with one shard, (L, B, T, ·) as the comments say. LayerNorm outputs and
    /// gelu(fch) are not kept per layer: backward remakes them (one pass each) from what is, which
    /// saves 6 of 16 (B, T, C) buffers per layer.
    struct Acts {
        encoded: Token,       // (B, T, C)
        ln1_mean: Token,      // (L, B, T)
        ln1_rstd: Token,      // (L, B, T)
        qkv: Token,           // (L, B, T, 3C)
        atty: Token,          // (L, B, T, C) attention core output (before the gate)
        gate: Token,          // (L, B, T, G) gate values σ(z), gated variants only
        attg: Token,          // (L, B, T, C) gated attention output (c_proj input), gated variants only
        att: TokenPair,       // (L, B, NH, T, T) probabilities, only when `store_attention` (reference kernel)
        lse: Token,           // (L, B, NH, T) row log-normalisers of the fused kernel
        residual2: Token,     // (L, B, T, C)
        ln2_mean: Token,      // (L, B, T)
        ln2_rstd: Token,      // (L, B, T)
        fch: Token,           // (L, B, T, 4C) c_fc output; backward overwrites it with gelu'(fch)
        residual3: Token,     // (L, B, T, C)
        lnf: Token,           // (B, T, C)
        lnf_mean: Token,      // (B, T)
        lnf_rstd: Token,      // (B, T)
        logits: Token,        // (B, T, V); backward writes ∂L/∂logits over them
        losses: Token,        // (B, T)
        proj: Token,          // (B, T, C) output of a c_proj before its residual add (not needed in backward)
        ln: Token,            // (B, T, C) the LayerNorm output at hand: made in forward, remade in backward
        hidden: Token,        // (B, T, 4C) gelu(fch): made in forward, remade in backward, where it then
                              // becomes ∂L/∂ gelu output and (in place) ∂L/∂ c_fc output
    }
}

crate::buffers! {
    /// Gradient buffers for one layer at a time, reused across layers.
    struct GradActs {
        dresidual: Token,     // (B, T, C) ∂L/∂ residual stream
        dproj: Token,         // (B, T, C) ∂L/∂ c_proj output (after undoing dropout)
        dln: Token,           // (B, T, C) ∂L/∂ LayerNorm output; before, ∂L/∂ attention c_proj input
        dattc: Token,         // (B, T, C) ∂L/∂ attention core output (gated variants)
        dgate: Token,         // (B, T, G) ∂L/∂ gate logits (gated variants)
        dnull: Seq,           // (B, NH) ∂L/∂ sink logits per sequence (sink)
        dqkv: Token,          // (B, T, 3C)
        datt_row: Token,      // (B, NH, 2T) scratch of the reference attention backward
    }
}

/// What each shard has of its own.
#[derive(Default)]
struct ShardState<F> {
    /// ∂loss/∂params of this shard's sequences; zero between backwards. Shard 0 holds the model's `grads`
    /// during a backward instead.
    grads: Vec<F>,
    /// LayerNorm's per-block partial parameter gradients.
    ln_scratch: Vec<F>,
    /// (threads, 3, T, T) per-thread scratch of the fused attention kernel.
    attn_scratch: Vec<F>,
    profile: Profile,
}

/// What every shard reads.
struct Ctx<'a, F> {
    cfg: &'a ModelConfig,
    lay: &'a ParamLayout,
    p: &'a [F],
    t: usize,
    idx: &'a [u32],             // (B, T)
    targets: Option<&'a [u32]>, // (B, T)
    dropout: Option<Dropout>,
    /// One shard: the kernels' GEMMs use the whole pool.
    parallel: bool,
    store_attention: bool,
}

impl<F: Real> Ctx<'_, F> {
    /// Parameters of kind k in layer l.
    fn pr(&self, k: Kind, l: usize) -> &[F] {
        &self.p[self.lay.layer_range(k, l, self.cfg.n_layer)]
    }

    /// The bias of kind k in layer l, if the model has biases.
    fn bias(&self, k: Kind, l: usize) -> Option<&[F]> {
        self.cfg.bias.then(|| self.pr(k, l))
    }

    fn attn_dropout(&self, l: usize, first_seq: usize) -> AttnDropout<'_> {
        self.dropout.as_ref().map(|d| AttnMask { dropout: d, site: site(l, Site::AttentionWeights), first_seq })
    }
}

pub struct Gpt<F: Real = f32> {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// All parameters, laid out by `layout`.
    pub params: Vec<F>,
    /// ∂loss/∂params, accumulated by `backward` until `zero_grad`.
    pub grads: Vec<F>,
    pub max_batch: usize,
    acts: Acts<Vec<F>>,
    grad_acts: GradActs<Vec<F>>,
    shard_state: Vec<ShardState<F>>,
    idx: Vec<u32>,     // (B, T) inputs of the last forward
    targets: Vec<u32>, // (B, T)
    shape: Option<(usize, usize)>,
    /// Shards of the last forward, which its backward uses too.
    shards: usize,
    dropout: Option<Dropout>,
    has_targets: bool,
    /// Wall time per kernel kind, accumulated over calls (see `quietgpt bench`); shard 0's.
    pub profile: Profile,
    /// Use the reference attention kernel, which keeps the probabilities for `attention_probs`.
    store_attention: bool,
}

impl<F: Real> Gpt<F> {
    /// A model with all parameters zero, able to run batches of up to `max_batch` sequences.
    pub fn new(config: ModelConfig, max_batch: usize) -> Result<Self> {
        config.validate()?;
        if max_batch == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        let layout = ParamLayout::new(&config);
        let (l, c, t, v, nh, b) =
            (config.n_layer, config.n_embd, config.block_size, config.vocab_size, config.n_head, max_batch);
        let bt = b * t;
        let g = config.attention.gate_groups(nh, c).unwrap_or(0);
        let z = |n: usize| vec![F::ZERO; n];
        let acts = Acts {
            encoded: z(bt * c),
            ln1_mean: z(l * bt),
            ln1_rstd: z(l * bt),
            qkv: z(l * bt * 3 * c),
            atty: z(l * bt * c),
            gate: z(l * bt * g),
            attg: if g > 0 { z(l * bt * c) } else { Vec::new() },
            att: Vec::new(),
            lse: z(l * b * nh * t),
            residual2: z(l * bt * c),
            ln2_mean: z(l * bt),
            ln2_rstd: z(l * bt),
            fch: z(l * bt * 4 * c),
            residual3: z(l * bt * c),
            lnf: z(bt * c),
            lnf_mean: z(bt),
            lnf_rstd: z(bt),
            logits: z(bt * v),
            losses: z(bt),
            proj: z(bt * c),
            ln: z(bt * c),
            hidden: z(bt * 4 * c),
        };
        let e = Vec::new;
        let grad_acts = GradActs {
            dresidual: e(),
            dproj: e(),
            dln: e(),
            dattc: e(),
            dgate: e(),
            dnull: e(),
            dqkv: e(),
            datt_row: e(),
        };
        Ok(Gpt {
            params: z(layout.total),
            grads: z(layout.total),
            layout,
            max_batch,
            acts,
            grad_acts,
            shard_state: Vec::new(),
            idx: vec![0; bt],
            targets: vec![0; bt],
            shape: None,
            shards: 1,
            dropout: None,
            has_targets: false,
            profile: Profile::default(),
            store_attention: false,
            config,
        })
    }

    /// nanoGPT's initialisation (see `params::init_params`).
    pub fn init(&mut self, rng: &mut Rng) {
        init_params(&self.config, &self.layout, rng, &mut self.params);
    }

    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    /// Runs the model on idx (B, T). With targets, returns the mean cross-entropy loss. `dropout` is
    /// `None` in evaluation. Logits of every position are kept for `logits()`.
    pub fn forward(
        &mut self,
        idx: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
        dropout: Option<Dropout>,
    ) -> Result<Option<f64>> {
        self.forward_probe(idx, targets, b, t, dropout, None)
    }

    /// `forward` with a probe that sees the activations and may modify Linear inputs (analysis, fake
    /// quantization). A probed forward must not be followed by `backward`: the saved activations are
    /// the probe's, not the model's. It runs as one shard, so the probe sees whole (B, T, ·) tensors.
    pub fn forward_probe<'p>(
        &mut self,
        idx: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
        dropout: Option<Dropout>,
        probe: Option<&mut (dyn Probe<F> + 'p)>,
    ) -> Result<Option<f64>> {
        on_pool(|| self.forward_body(idx, targets, b, t, dropout, probe))
    }

    fn forward_body<'p>(
        &mut self,
        idx: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
        dropout: Option<Dropout>,
        probe: Option<&mut (dyn Probe<F> + 'p)>,
    ) -> Result<Option<f64>> {
        let v = self.config.vocab_size;
        if b == 0 || b > self.max_batch || t == 0 || t > self.config.block_size {
            return Err(Error::Config(format!(
                "batch of {b}x{t} does not fit the model (max batch {}, block_size {})",
                self.max_batch, self.config.block_size
            )));
        }
        let bt = b * t;
        if idx.len() != bt || targets.is_some_and(|y| y.len() != bt) {
            return Err(Error::Data(format!("expected {bt} tokens for a {b}x{t} batch")));
        }
        for &tok in idx.iter().chain(targets.unwrap_or(&[])) {
            if tok as usize >= v {
                return Err(Error::Data(format!("token id {tok} is outside the vocabulary of {v}")));
            }
        }
        self.idx[..bt].copy_from_slice(idx);
        if let Some(y) = targets {
            self.targets[..bt].copy_from_slice(y);
        }
        self.shape = Some((b, t));
        self.has_targets = targets.is_some() && probe.is_none();
        self.dropout = dropout;
        // One shard per worker; a probe, and the stored probabilities, see the whole batch at once.
        let shards = if probe.is_some() || self.store_attention { 1 } else { b.min(rayon::current_num_threads()) };
        self.shards = shards;
        self.ensure_shard_state(shards, t);

        let cx = Ctx {
            cfg: &self.config,
            lay: &self.layout,
            p: &self.params,
            t,
            idx: &self.idx[..bt],
            targets: targets.map(|_| &self.targets[..bt]),
            dropout,
            parallel: shards == 1,
            store_attention: self.store_attention,
        };
        let acts = self.acts.view(b, t, (self.max_batch, self.config.block_size));
        if shards == 1 {
            forward_shard(&cx, acts, &mut self.shard_state[0], Shard { index: 0, seqs: 0..b }, probe);
        } else {
            let f = |(a, st): (Acts<&mut [F]>, &mut [ShardState<F>]), sh: Shard| {
                forward_shard(&cx, a, &mut st[0], sh, None)
            };
            for_each_shard((acts, &mut self.shard_state[..shards]), b, 0..shards, shards, &f);
        }
        self.collect_profile();
        // mean over the batch, summed in f64 in order (the same for any number of shards)
        Ok(targets.map(|_| self.acts.losses[..bt].iter().map(|l| l.to_f64()).sum::<f64>() / bt as f64))
    }

    /// Logits (B, T, V) of the last forward, until a backward writes ∂L/∂logits over them.
    pub fn logits(&self) -> &[F] {
        let (b, t) = self.shape.unwrap_or((0, 0));
        &self.acts.logits[..b * t * self.config.vocab_size]
    }

    /// Attention probabilities of layer l from the last forward (B, NH, T, T), before dropout.
    /// Needs `set_store_attention(true)` before the forward (which then runs as one shard); empty otherwise.
    pub fn attention_probs(&self, l: usize) -> &[F] {
        if !self.store_attention {
            return &[];
        }
        let (b, t) = self.shape.unwrap_or((0, 0));
        let n = b * self.config.n_head * t * t;
        &self.acts.att[l * n..(l + 1) * n]
    }

    pub fn zero_grad(&mut self) {
        self.grads.fill(F::ZERO);
    }

    /// Accumulates ∂(loss_scale · loss)/∂params into `grads`, for the last forward (which must have had
    /// targets), once: it uses up that forward's activations. With gradient accumulation over k
    /// micro-steps, loss_scale = 1/k as in nanoGPT.
    pub fn backward(&mut self, loss_scale: f64) -> Result<()> {
        on_pool(|| self.backward_body(loss_scale))
    }

    fn backward_body(&mut self, loss_scale: f64) -> Result<()> {
        let (b, t) = self.shape.filter(|_| self.has_targets).ok_or_else(|| {
            Error::Config("backward needs a forward with targets before it, one forward per backward (backward overwrites activations it has used)".into())
        })?;
        self.has_targets = false;
        let bt = b * t;
        let shards = self.shards;
        self.ensure_grad_acts();
        if self.dropout.is_some() && self.grad_acts.dproj.is_empty() {
            self.grad_acts.dproj = vec![F::ZERO; self.max_batch * self.config.block_size * self.config.n_embd];
        }
        for st in &mut self.shard_state[1..shards] {
            if st.grads.len() != self.grads.len() {
                st.grads = vec![F::ZERO; self.grads.len()];
            }
        }
        // Shard 0 accumulates into the model's gradients; the others into their own, added in order below.
        std::mem::swap(&mut self.grads, &mut self.shard_state[0].grads);
        let cx = Ctx {
            cfg: &self.config,
            lay: &self.layout,
            p: &self.params,
            t,
            idx: &self.idx[..bt],
            targets: Some(&self.targets[..bt]),
            dropout: self.dropout,
            parallel: shards == 1,
            store_attention: self.store_attention,
        };
        let dloss = F::from_f64(loss_scale / bt as f64);
        let cap = (self.max_batch, self.config.block_size);
        let parts = (self.acts.view(b, t, cap), self.grad_acts.view(b, t, cap));
        let f = |((a, g), st): ((Acts<&mut [F]>, GradActs<&mut [F]>), &mut [ShardState<F>]), sh: Shard| {
            backward_shard(&cx, a, g, &mut st[0], sh, dloss)
        };
        for_each_shard((parts, &mut self.shard_state[..shards]), b, 0..shards, shards, &f);
        std::mem::swap(&mut self.grads, &mut self.shard_state[0].grads);
        // Add the other shards' gradients in shard order, leaving theirs zero for the next backward
        // (they start zero, and only `backward_shard` adds to them).
        for st in &mut self.shard_state[1..shards] {
            use rayon::prelude::*;
            self.grads.par_chunks_mut(8192).zip(st.grads.par_chunks_mut(8192)).for_each(|(g, o)| {
                for (x, y) in g.iter_mut().zip(o.iter_mut()) {
                    *x += *y;
                    *y = F::ZERO;
                }
            });
        }
        self.collect_profile();
        Ok(())
    }

    /// Keep the attention probabilities of the next forward passes (for analysis): switches to the
    /// reference attention kernel, which stores (L, B, NH, T, T) of them. Training leaves this off.
    pub fn set_store_attention(&mut self, on: bool) {
        self.store_attention = on;
        self.shape = None;
    }

    pub fn stores_attention(&self) -> bool {
        self.store_attention
    }

    /// Per-shard state, and the attention buffers, made on first use (or when the pool grows).
    fn ensure_shard_state(&mut self, shards: usize, t: usize) {
        while self.shard_state.len() < shards {
            self.shard_state.push(ShardState::default());
        }
        let (l, nh, b) = (self.config.n_layer, self.config.n_head, self.max_batch);
        if self.store_attention {
            if self.acts.att.is_empty() {
                let tt = self.config.block_size * self.config.block_size;
                self.acts.att = vec![F::ZERO; l * b * nh * tt];
            }
        } else {
            // every worker may run a task of any shard, so each shard has a slot per worker
            let need = rayon::current_num_threads() * attention_fused::scratch_per_thread(t);
            for st in &mut self.shard_state[..shards] {
                if st.attn_scratch.len() < need {
                    st.attn_scratch = vec![F::ZERO; need];
                }
            }
        }
    }

    /// Gradient buffers are made on the first backward, so that inference-only models do not pay for them.
    fn ensure_grad_acts(&mut self) {
        if !self.grad_acts.dresidual.is_empty() {
            return;
        }
        let (c, t, nh, b) = (self.config.n_embd, self.config.block_size, self.config.n_head, self.max_batch);
        let bt = b * t;
        let g = self.config.attention.gate_groups(nh, c).unwrap_or(0);
        let z = |n: usize| vec![F::ZERO; n];
        self.grad_acts = GradActs {
            dresidual: z(bt * c),
            dproj: Vec::new(), // made by the first backward with dropout (see `backward_body`)
            dln: z(bt * c),
            dattc: if g > 0 { z(bt * c) } else { Vec::new() },
            dgate: z(bt * g),
            dnull: z(b * nh),
            dqkv: z(bt * 3 * c),
            datt_row: z(backward_scratch(b, t, nh)),
        };
    }

    /// Shard 0's kernel times go to `profile` (the shards run side by side, so one stands for all).
    fn collect_profile(&mut self) {
        for (s, st) in self.shard_state.iter_mut().enumerate() {
            if s == 0 {
                self.profile.merge(&st.profile);
            }
            st.profile.reset();
        }
    }

    /// The parameter tensor `name` (nanoGPT naming).
    pub fn tensor(&self, name: &str) -> Option<&[F]> {
        self.layout.find(name).map(|t| &self.params[t.offset..t.offset + t.len])
    }

    pub fn grad(&self, name: &str) -> Option<&[F]> {
        self.layout.find(name).map(|t| &self.grads[t.offset..t.offset + t.len])
    }
}

/// The forward pass over one shard's sequences (all of the batch when there is one shard).
fn forward_shard<'p, F: Real>(
    cx: &Ctx<F>,
    a: Acts<&mut [F]>,
    st: &mut ShardState<F>,
    sh: Shard,
    mut probe: Option<&mut (dyn Probe<F> + 'p)>,
) {
    let (c, v, nh, nl, t) = (cx.cfg.n_embd, cx.cfg.vocab_size, cx.cfg.n_head, cx.cfg.n_layer, cx.t);
    let (b, seq0) = (sh.seqs.len(), sh.seqs.start);
    let bt = b * t;
    let first = seq0 * t * c; // this shard's first element of a (B, T, C) tensor of the whole batch
    let idx = &cx.idx[seq0 * t..(seq0 + b) * t];
    let groups = cx.cfg.attention.gate_groups(nh, c);
    let (p, lay, par) = (cx.p, cx.lay, cx.parallel);

    timed!(
        st.profile,
        false,
        Op::Encoder,
        encoder_forward(a.encoded, idx, &p[lay.range(Kind::Wte)], &p[lay.range(Kind::Wpe)], b, t, c)
    );
    if let Some(d) = &cx.dropout {
        timed!(st.profile, false, Op::Dropout, d.apply_from(site(0, Site::Embedding), first, &mut a.encoded[..bt * c]));
    }
    if let Some(pb) = probe.as_deref_mut() {
        pb.observe(0, Point::Embedding, &a.encoded[..bt * c]);
    }
    // ln_1 of layer 0; every later LayerNorm is fused with the residual add before it
    timed!(
        st.profile,
        false,
        Op::LayerNorm,
        layernorm_forward(
            a.ln,
            &mut a.ln1_mean[..bt],
            &mut a.ln1_rstd[..bt],
            &a.encoded[..bt * c],
            cx.pr(Kind::Ln1W, 0),
            cx.bias(Kind::Ln1B, 0),
            bt,
            c
        )
    );
    for l in 0..nl {
        let (lc, l3c, l4c, lr) = (
            l * bt * c..(l + 1) * bt * c,
            l * bt * 3 * c..(l + 1) * bt * 3 * c,
            l * bt * 4 * c..(l + 1) * bt * 4 * c,
            l * bt..(l + 1) * bt,
        );
        let residual: &[F] = if l == 0 { &a.encoded[..bt * c] } else { &a.residual3[(l - 1) * bt * c..l * bt * c] };
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(l, Point::Ln1, &a.ln[..bt * c]);
            pb.linear_input(l, Linear::Qkv, &mut a.ln[..bt * c]);
        }
        timed!(
            st.profile,
            false,
            Op::Matmul,
            matmul_forward(
                &mut a.qkv[l3c.clone()],
                a.ln,
                cx.pr(Kind::QkvW, l),
                cx.bias(Kind::QkvB, l),
                bt,
                c,
                3 * c,
                par
            )
        );
        if let Some(g) = groups {
            let (w, gb) = gate_params(cx.cfg, |k| cx.pr(k, l));
            timed!(
                st.profile,
                false,
                Op::Matmul,
                matmul_forward(&mut a.gate[l * bt * g..(l + 1) * bt * g], a.ln, w, gb, bt, c, g, par)
            );
        }
        let variant = Variant::of(cx.cfg, cx.pr(Kind::Sink, l));
        let attn_drop = cx.attn_dropout(l, seq0);
        if cx.store_attention {
            let att = &mut a.att[l * b * nh * t * t..(l + 1) * b * nh * t * t];
            timed!(
                st.profile,
                false,
                Op::Attention,
                attention_forward(&mut a.atty[lc.clone()], att, &a.qkv[l3c.clone()], &variant, attn_drop, b, t, c, nh)
            );
        } else {
            let lse = &mut a.lse[l * b * nh * t..(l + 1) * b * nh * t];
            timed!(
                st.profile,
                false,
                Op::Attention,
                attention_fused::attention_forward(
                    &mut a.atty[lc.clone()],
                    lse,
                    &a.qkv[l3c.clone()],
                    &variant,
                    attn_drop,
                    &mut st.attn_scratch,
                    b,
                    t,
                    c,
                    nh
                )
            );
        }
        let proj_in: &mut [F] = match groups {
            Some(g) => {
                let gate = &mut a.gate[l * bt * g..(l + 1) * bt * g];
                timed!(
                    st.profile,
                    false,
                    Op::Attention,
                    gate_forward(&mut a.attg[lc.clone()], gate, &a.atty[lc.clone()], bt, c, g)
                );
                if let Some(pb) = probe.as_deref_mut() {
                    pb.observe(l, Point::Gate, gate);
                }
                &mut a.attg[lc.clone()]
            }
            None => &mut a.atty[lc.clone()],
        };
        if let Some(pb) = probe.as_deref_mut() {
            pb.linear_input(l, Linear::AttnProj, proj_in);
        }
        timed!(
            st.profile,
            false,
            Op::Matmul,
            matmul_forward(a.proj, proj_in, cx.pr(Kind::AttProjW, l), cx.bias(Kind::AttProjB, l), bt, c, c, par)
        );
        if let Some(d) = &cx.dropout {
            timed!(
                st.profile,
                false,
                Op::Dropout,
                d.apply_from(site(l, Site::AttentionOut), first, &mut a.proj[..bt * c])
            );
        }
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(l, Point::AttnOut, &a.proj[..bt * c]);
        }
        let (ln2_mean, ln2_rstd) = (&mut a.ln2_mean[lr.clone()], &mut a.ln2_rstd[lr.clone()]);
        timed!(
            st.profile,
            false,
            Op::Residual,
            residual_layernorm_forward(
                &mut a.residual2[lc.clone()],
                a.ln,
                ln2_mean,
                ln2_rstd,
                residual,
                &a.proj[..bt * c],
                cx.pr(Kind::Ln2W, l),
                cx.bias(Kind::Ln2B, l),
                bt,
                c
            )
        );
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(l, Point::Ln2, &a.ln[..bt * c]);
            pb.linear_input(l, Linear::Fc, &mut a.ln[..bt * c]);
        }
        timed!(
            st.profile,
            false,
            Op::Matmul,
            matmul_forward(
                &mut a.fch[l4c.clone()],
                a.ln,
                cx.pr(Kind::FcW, l),
                cx.bias(Kind::FcB, l),
                bt,
                c,
                4 * c,
                par
            )
        );
        timed!(st.profile, false, Op::Gelu, gelu_forward(&mut a.hidden[..bt * 4 * c], &a.fch[l4c.clone()]));
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(l, Point::MlpHidden, &a.hidden[..bt * 4 * c]);
            pb.linear_input(l, Linear::FcProj, &mut a.hidden[..bt * 4 * c]);
        }
        timed!(
            st.profile,
            false,
            Op::Matmul,
            matmul_forward(a.proj, a.hidden, cx.pr(Kind::FcProjW, l), cx.bias(Kind::FcProjB, l), bt, 4 * c, c, par)
        );
        if let Some(d) = &cx.dropout {
            timed!(st.profile, false, Op::Dropout, d.apply_from(site(l, Site::MlpOut), first, &mut a.proj[..bt * c]));
        }
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(l, Point::MlpOut, &a.proj[..bt * c]);
        }
        // residual3 = residual2 + MLP output, and the next LayerNorm: ln_1 of layer l + 1, or ln_f
        let (r2, r3, proj) = (&a.residual2[lc.clone()], &mut a.residual3[lc.clone()], &a.proj[..bt * c]);
        let next = (l + 1) * bt..(l + 2) * bt;
        let (out, mean, rstd, w, b) = if l + 1 < nl {
            (
                &mut *a.ln,
                &mut a.ln1_mean[next.clone()],
                &mut a.ln1_rstd[next],
                cx.pr(Kind::Ln1W, l + 1),
                cx.bias(Kind::Ln1B, l + 1),
            )
        } else {
            (
                &mut *a.lnf,
                &mut *a.lnf_mean,
                &mut *a.lnf_rstd,
                &p[lay.range(Kind::LnfW)],
                cx.cfg.bias.then(|| &p[lay.range(Kind::LnfB)]),
            )
        };
        timed!(st.profile, false, Op::Residual, residual_layernorm_forward(r3, out, mean, rstd, r2, proj, w, b, bt, c));
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(l, Point::Residual, &a.residual3[lc.clone()]);
        }
    }
    if let Some(pb) = probe.as_deref_mut() {
        pb.observe(nl, Point::LnF, &a.lnf[..bt * c]);
    }
    timed!(
        st.profile,
        false,
        Op::Matmul,
        matmul_forward(a.logits, a.lnf, &p[lay.range(Kind::Wte)], None, bt, c, v, par)
    );
    if let Some(y) = cx.targets {
        let y = &y[seq0 * t..(seq0 + b) * t];
        timed!(st.profile, false, Op::CrossEntropy, crossentropy_forward(a.losses, a.logits, y, bt, v));
    }
}

/// The backward pass over one shard's sequences, into the shard's gradients `st.grads`. `dloss` is
/// ∂L/∂loss_n of every position (loss_scale / (B·T) of the whole batch).
fn backward_shard<F: Real>(
    cx: &Ctx<F>,
    a: Acts<&mut [F]>,
    g: GradActs<&mut [F]>,
    st: &mut ShardState<F>,
    sh: Shard,
    dloss: F,
) {
    let (c, v, nh, nl, t) = (cx.cfg.n_embd, cx.cfg.vocab_size, cx.cfg.n_head, cx.cfg.n_layer, cx.t);
    let (b, seq0) = (sh.seqs.len(), sh.seqs.start);
    let bt = b * t;
    let first = seq0 * t * c;
    let (idx, targets) =
        (&cx.idx[seq0 * t..(seq0 + b) * t], &cx.targets.expect("backward has targets")[seq0 * t..(seq0 + b) * t]);
    let (p, lay, par, has_bias) = (cx.p, cx.lay, cx.parallel, cx.cfg.bias);
    let groups = cx.cfg.attention.gate_groups(nh, c);
    let dropout = cx.dropout;
    let ShardState { grads, ln_scratch, attn_scratch, profile } = st;
    timed!(profile, true, Op::CrossEntropy, crossentropy_backward(a.logits, targets, dloss, bt, v));
    let dlogits = &a.logits[..bt * v];
    let dln = &mut g.dln[..bt * c];
    timed!(
        profile,
        true,
        Op::Matmul,
        matmul_backward(
            dln,
            false,
            &mut grads[lay.range(Kind::Wte)],
            None,
            dlogits,
            a.lnf,
            &p[lay.range(Kind::Wte)],
            bt,
            c,
            v,
            par
        )
    );
    let dres = &mut g.dresidual[..bt * c];
    dres.fill(F::ZERO);
    let last = &a.residual3[(nl - 1) * bt * c..nl * bt * c];
    let (dlnf_w, dlnf_b) = split_pair(grads, lay.range(Kind::LnfW), lay.range(Kind::LnfB), has_bias);
    timed!(
        profile,
        true,
        Op::LayerNorm,
        layernorm_backward(
            dres,
            dlnf_w,
            dlnf_b,
            &g.dln[..bt * c],
            last,
            &p[lay.range(Kind::LnfW)],
            a.lnf_mean,
            a.lnf_rstd,
            bt,
            c,
            ln_scratch
        )
    );

    for l in (0..nl).rev() {
        let (lc, l3c, l4c, lr) = (
            l * bt * c..(l + 1) * bt * c,
            l * bt * 3 * c..(l + 1) * bt * 3 * c,
            l * bt * 4 * c..(l + 1) * bt * 4 * c,
            l * bt..(l + 1) * bt,
        );
        let residual: &[F] = if l == 0 { &a.encoded[..bt * c] } else { &a.residual3[(l - 1) * bt * c..l * bt * c] };
        let r = |k: Kind| lay.layer_range(k, l, nl);

        // MLP branch: residual3 = residual2 + drop(c_proj(gelu(c_fc(ln_2(residual2)))))
        let dproj = timed!(
            profile,
            true,
            Op::Dropout,
            undo_dropout(g.dproj, &g.dresidual[..bt * c], dropout.as_ref(), site(l, Site::MlpOut), first)
        );
        // gelu(fch) remade for c_proj's weight gradient, and fch overwritten with gelu'(fch)
        timed!(profile, true, Op::Gelu, gelu_remake_with_grad(&mut a.hidden[..bt * 4 * c], &mut a.fch[l4c.clone()]));
        let (dw, db) = split_pair(grads, r(Kind::FcProjW), r(Kind::FcProjB), has_bias);
        timed!(
            profile,
            true,
            Op::Matmul,
            matmul_backward_over_input(a.hidden, dw, db, dproj, &p[r(Kind::FcProjW)], bt, 4 * c, c, par)
        );
        let dfch = &mut a.hidden[..bt * 4 * c]; // ∂L/∂ gelu output, made ∂L/∂ c_fc output in place
        timed!(profile, true, Op::Gelu, gelu_backward_from_grad(dfch, &a.fch[l4c.clone()]));
        let (w2, b2) = (&p[r(Kind::Ln2W)], has_bias.then(|| &p[r(Kind::Ln2B)]));
        timed!(
            profile,
            true,
            Op::LayerNorm,
            layernorm_recompute(
                a.ln,
                &a.residual2[lc.clone()],
                &a.ln2_mean[lr.clone()],
                &a.ln2_rstd[lr.clone()],
                w2,
                b2,
                bt,
                c
            )
        );
        let dln = &mut g.dln[..bt * c];
        let (dw, db) = split_pair(grads, r(Kind::FcW), r(Kind::FcB), has_bias);
        timed!(
            profile,
            true,
            Op::Matmul,
            matmul_backward(
                dln,
                false,
                dw,
                db,
                &a.hidden[..bt * 4 * c],
                &a.ln[..bt * c],
                &p[r(Kind::FcW)],
                bt,
                c,
                4 * c,
                par
            )
        );
        let (dw, db) = split_pair(grads, r(Kind::Ln2W), r(Kind::Ln2B), has_bias);
        timed!(
            profile,
            true,
            Op::LayerNorm,
            layernorm_backward(
                &mut g.dresidual[..bt * c],
                dw,
                db,
                &g.dln[..bt * c],
                &a.residual2[lc.clone()],
                w2,
                &a.ln2_mean[lr.clone()],
                &a.ln2_rstd[lr.clone()],
                bt,
                c,
                ln_scratch
            )
        );

        // attention branch: residual2 = residual + drop(c_proj(attn(ln_1(residual))))
        let dproj = timed!(
            profile,
            true,
            Op::Dropout,
            undo_dropout(g.dproj, &g.dresidual[..bt * c], dropout.as_ref(), site(l, Site::AttentionOut), first)
        );
        let datty = &mut g.dln[..bt * c];
        let (dw, db) = split_pair(grads, r(Kind::AttProjW), r(Kind::AttProjB), has_bias);
        let proj_in = if groups.is_some() { &a.attg[lc.clone()] } else { &a.atty[lc.clone()] };
        timed!(
            profile,
            true,
            Op::Matmul,
            matmul_backward(datty, false, dw, db, dproj, proj_in, &p[r(Kind::AttProjW)], bt, c, c, par)
        );
        // through the gate: ∂L/∂(core output) into dattc, ∂L/∂(gate logits) into dgate
        let dcore: &[F] = match groups {
            Some(gg) => {
                let dattc = &mut g.dattc[..bt * c];
                dattc.fill(F::ZERO);
                let gate = &a.gate[l * bt * gg..(l + 1) * bt * gg];
                timed!(
                    profile,
                    true,
                    Op::Attention,
                    gate_backward(
                        dattc,
                        &mut g.dgate[..bt * gg],
                        &g.dln[..bt * c],
                        &a.atty[lc.clone()],
                        gate,
                        bt,
                        c,
                        gg
                    )
                );
                &g.dattc[..bt * c]
            }
            None => &g.dln[..bt * c],
        };
        let dqkv = &mut g.dqkv[..bt * 3 * c];
        dqkv.fill(F::ZERO);
        let variant = Variant::of(cx.cfg, &p[r(Kind::Sink)]);
        let sink = cx.cfg.attention == AttentionKind::Sink;
        let dnull = sink.then(|| &mut g.dnull[..b * nh]);
        let attn_drop = cx.attn_dropout(l, seq0);
        if cx.store_attention {
            let att = &a.att[l * b * nh * t * t..(l + 1) * b * nh * t * t];
            timed!(
                profile,
                true,
                Op::Attention,
                attention_backward(
                    dqkv,
                    dnull,
                    g.datt_row,
                    dcore,
                    &a.qkv[l3c.clone()],
                    att,
                    &variant,
                    attn_drop,
                    b,
                    t,
                    c,
                    nh
                )
            );
        } else {
            let lse = &a.lse[l * b * nh * t..(l + 1) * b * nh * t];
            timed!(
                profile,
                true,
                Op::Attention,
                attention_fused::attention_backward(
                    dqkv,
                    dnull,
                    dcore,
                    &a.qkv[l3c.clone()],
                    lse,
                    &variant,
                    attn_drop,
                    attn_scratch,
                    b,
                    t,
                    c,
                    nh
                )
            );
        }
        if sink {
            // ∂L/∂σ_h = Σ over the shard's sequences (in order) of the kernel's per-sequence parts
            let ds = &mut grads[r(Kind::Sink)];
            for bi in 0..b {
                for (d, &x) in ds.iter_mut().zip(&g.dnull[bi * nh..(bi + 1) * nh]) {
                    *d += x;
                }
            }
        }
        let (w1, b1) = (&p[r(Kind::Ln1W)], has_bias.then(|| &p[r(Kind::Ln1B)]));
        timed!(
            profile,
            true,
            Op::LayerNorm,
            layernorm_recompute(a.ln, residual, &a.ln1_mean[lr.clone()], &a.ln1_rstd[lr.clone()], w1, b1, bt, c)
        );
        let dln = &mut g.dln[..bt * c];
        let (dw, db) = split_pair(grads, r(Kind::QkvW), r(Kind::QkvB), has_bias);
        timed!(
            profile,
            true,
            Op::Matmul,
            matmul_backward(
                dln,
                false,
                dw,
                db,
                &g.dqkv[..bt * 3 * c],
                &a.ln[..bt * c],
                &p[r(Kind::QkvW)],
                bt,
                c,
                3 * c,
                par
            )
        );
        if let Some(gg) = groups {
            // the gate's linear map reads ln_1 too: its input gradient adds to c_attn's
            let (wk, bk) = gate_kinds(cx.cfg.attention);
            let (dw, db) = split_pair(grads, r(wk), r(bk), true);
            timed!(
                profile,
                true,
                Op::Matmul,
                matmul_backward(dln, true, dw, db, &g.dgate[..bt * gg], &a.ln[..bt * c], &p[r(wk)], bt, c, gg, par)
            );
        }
        let (dw, db) = split_pair(grads, r(Kind::Ln1W), r(Kind::Ln1B), has_bias);
        timed!(
            profile,
            true,
            Op::LayerNorm,
            layernorm_backward(
                &mut g.dresidual[..bt * c],
                dw,
                db,
                &g.dln[..bt * c],
                residual,
                w1,
                &a.ln1_mean[lr.clone()],
                &a.ln1_rstd[lr.clone()],
                bt,
                c,
                ln_scratch
            )
        );
    }
    let dres = &mut g.dresidual[..bt * c];
    if let Some(d) = &dropout {
        timed!(profile, true, Op::Dropout, d.apply_from(site(0, Site::Embedding), first, dres));
    }
    let (dwte, dwpe) = split_pair(grads, lay.range(Kind::Wte), lay.range(Kind::Wpe), true);
    timed!(profile, true, Op::Encoder, encoder_backward(dwte, dwpe.expect("wpe always exists"), dres, idx, b, t, c));
}

/// The weight and bias kinds of the gate's linear map (the gated variants only).
fn gate_kinds(kind: AttentionKind) -> (Kind, Kind) {
    match kind {
        AttentionKind::Outgate => (Kind::OutGateW, Kind::OutGateB),
        _ => (Kind::GateW, Kind::GateB),
    }
}

/// The gate's weight and bias (None when it has none: the output gate with bias = false).
fn gate_params<'a, F>(cfg: &ModelConfig, pr: impl Fn(Kind) -> &'a [F]) -> (&'a [F], Option<&'a [F]>) {
    let (w, b) = gate_kinds(cfg.attention);
    let bias = pr(b);
    (pr(w), (!bias.is_empty()).then_some(bias))
}

/// ∂L/∂(c_proj output) from ∂L/∂(residual): the same gradient, times the dropout mask if any
/// (`first`: the shard's first element of the site).
fn undo_dropout<'a, F: Real>(
    buf: &'a mut [F],
    dres: &'a [F],
    dropout: Option<&Dropout>,
    s: u64,
    first: usize,
) -> &'a [F] {
    match dropout {
        None => dres,
        Some(d) => {
            let n = dres.len();
            buf[..n].copy_from_slice(dres);
            d.apply_from(s, first, &mut buf[..n]);
            &buf[..n]
        }
    }
}

/// Two disjoint mutable ranges of the gradient buffer (a weight and its bias); the second is `None`
/// when the model has no biases. `first` must come before `second`.
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
