//! The GPT of nanoGPT's `model.py`, as explicit forward and backward passes over preallocated buffers.
//!
//!   x = drop(wte[idx] + wpe[0..T))                                   (B, T, C)
//!   per block:  x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
//!   attn(h) = c_proj(gate(h) ⊙ core(c_attn(h)))   (gate ≡ 1 except for the gated variants)
//!   logits = ln_f(x) @ wte^T                                           (B, T, V), lm_head tied to wte
//!   loss = mean_n cross_entropy(logits_n, target_n)
//!
//! Parameters and gradients are one flat buffer each (see `params`); every activation buffer is sized
//! once for (max_batch, block_size), so a training step allocates nothing.

use super::attention::{attention_backward, attention_forward, backward_scratch, Variant};
use super::attention_fused;
use super::attention_gate::{gate_backward, gate_forward};
use super::crossentropy::{crossentropy_backward, crossentropy_forward};
use super::dropout::{site, Dropout, Site};
use super::encoder::{encoder_backward, encoder_forward};
use super::gelu::{gelu_backward, gelu_forward};
use super::layernorm::{layernorm_backward, layernorm_forward};
use super::matmul::{matmul_backward, matmul_forward};
use super::params::{Kind, ParamLayout};
use super::profile::{Op, Profile};
use crate::timed;
use super::real::Real;
use crate::config::{AttentionKind, ModelConfig};
use crate::rng::Rng;
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

/// Forward activations, each buffer sized for (max_batch, block_size); per-layer ones hold L copies.
#[derive(Default)]
struct Acts<F> {
    encoded: Vec<F>,   // (B, T, C)
    ln1: Vec<F>,       // (L, B, T, C)
    ln1_mean: Vec<F>,  // (L, B, T)
    ln1_rstd: Vec<F>,  // (L, B, T)
    qkv: Vec<F>,       // (L, B, T, 3C)
    atty: Vec<F>,      // (L, B, T, C) attention core output (before the gate)
    gate: Vec<F>,      // (L, B, T, G) gate values σ(z), gated variants only
    attg: Vec<F>,      // (L, B, T, C) gated attention output (c_proj input), gated variants only
    att: Vec<F>,       // (L, B, NH, T, T) probabilities, only when `store_attention` (reference kernel)
    lse: Vec<F>,       // (L, B, NH, T) row log-normalisers of the fused kernel
    residual2: Vec<F>, // (L, B, T, C)
    ln2: Vec<F>,       // (L, B, T, C)
    ln2_mean: Vec<F>,  // (L, B, T)
    ln2_rstd: Vec<F>,  // (L, B, T)
    fch: Vec<F>,       // (L, B, T, 4C)
    fch_gelu: Vec<F>,  // (L, B, T, 4C)
    residual3: Vec<F>, // (L, B, T, C)
    lnf: Vec<F>,       // (B, T, C)
    lnf_mean: Vec<F>,  // (B, T)
    lnf_rstd: Vec<F>,  // (B, T)
    logits: Vec<F>,    // (B, T, V)
    losses: Vec<F>,    // (B, T)
    proj: Vec<F>,      // (B, T, C) output of a c_proj before its residual add (not needed in backward)
}

/// Gradient buffers for one layer at a time, reused across layers.
#[derive(Default)]
struct GradActs<F> {
    dresidual: Vec<F>, // (B, T, C) ∂L/∂ residual stream
    dproj: Vec<F>,     // (B, T, C) ∂L/∂ c_proj output (after undoing dropout)
    dln: Vec<F>,       // (B, T, C) ∂L/∂ LayerNorm output
    datty: Vec<F>,     // (B, T, C) ∂L/∂ c_proj input
    dattc: Vec<F>,     // (B, T, C) ∂L/∂ attention core output (gated variants)
    dgate: Vec<F>,     // (B, T, G) ∂L/∂ gate logits (gated variants)
    dnull: Vec<F>,     // (B, NH) ∂L/∂ sink logits per sequence (sink)
    dqkv: Vec<F>,      // (B, T, 3C)
    dfch_gelu: Vec<F>, // (B, T, 4C)
    dfch: Vec<F>,      // (B, T, 4C)
    datt_row: Vec<F>,  // (B, NH, 2T) scratch of the reference attention backward
    dlogits: Vec<F>,   // (B, T, V)
    ln_scratch: Vec<F>, // LayerNorm's per-block partial parameter gradients
}

pub struct Gpt<F: Real = f32> {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// All parameters, laid out by `layout`.
    pub params: Vec<F>,
    /// ∂loss/∂params, accumulated by `backward` until `zero_grad`.
    pub grads: Vec<F>,
    pub max_batch: usize,
    acts: Acts<F>,
    grad_acts: GradActs<F>,
    idx: Vec<u32>,     // (B, T) inputs of the last forward
    targets: Vec<u32>, // (B, T)
    shape: Option<(usize, usize)>,
    dropout: Option<Dropout>,
    has_targets: bool,
    /// Wall time per kernel kind, accumulated over calls (see `quietgpt bench`).
    pub profile: Profile,
    /// Use the reference attention kernel, which keeps the probabilities for `attention_probs`.
    store_attention: bool,
    /// (threads, 3, T, T) per-thread scratch of the fused attention kernel.
    attn_scratch: Vec<F>,
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
            ln1: z(l * bt * c),
            ln1_mean: z(l * bt),
            ln1_rstd: z(l * bt),
            qkv: z(l * bt * 3 * c),
            atty: z(l * bt * c),
            gate: z(l * bt * g),
            attg: if g > 0 { z(l * bt * c) } else { Vec::new() },
            att: Vec::new(),
            lse: z(l * b * nh * t),
            residual2: z(l * bt * c),
            ln2: z(l * bt * c),
            ln2_mean: z(l * bt),
            ln2_rstd: z(l * bt),
            fch: z(l * bt * 4 * c),
            fch_gelu: z(l * bt * 4 * c),
            residual3: z(l * bt * c),
            lnf: z(bt * c),
            lnf_mean: z(bt),
            lnf_rstd: z(bt),
            logits: z(bt * v),
            losses: z(bt),
            proj: z(bt * c),
        };
        Ok(Gpt {
            params: z(layout.total),
            grads: z(layout.total),
            layout,
            max_batch,
            acts,
            grad_acts: GradActs::default(),
            idx: vec![0; bt],
            targets: vec![0; bt],
            shape: None,
            dropout: None,
            has_targets: false,
            profile: Profile::default(),
            store_attention: false,
            attn_scratch: Vec::new(),
            config,
        })
    }

    /// nanoGPT's initialisation: N(0, 0.02) for Linear and Embedding weights, N(0, 0.02/√(2L)) for the
    /// residual projections (attn.c_proj, mlp.c_proj), zero biases, LayerNorm weights 1. The variants'
    /// tensors (see `params`): sink logits 0 (the model starts as softmax1); gate weights N(0, 0.02);
    /// the per-head gate's bias logit(gate_init), the output gate's bias 0 (σ = ½).
    ///
    /// The tensors every variant has are drawn first, in nanoGPT order, so that they get the same values
    /// as softmax's for the same seed; the variant's own tensors follow from the same stream.
    pub fn init(&mut self, rng: &mut Rng) {
        let proj_std = 0.02 / (2.0 * self.config.n_layer as f64).sqrt();
        let gate_init = self.config.gate_init as f64;
        let own = |k: Kind| matches!(k, Kind::Sink | Kind::GateW | Kind::GateB | Kind::OutGateW | Kind::OutGateB);
        let named = self.layout.named();
        let order: Vec<_> = named.iter().filter(|t| !own(t.kind)).chain(named.iter().filter(|t| own(t.kind))).cloned().collect();
        for t in order {
            let p = &mut self.params[t.offset..t.offset + t.len];
            match t.kind {
                Kind::Ln1W | Kind::Ln2W | Kind::LnfW => p.fill(F::ONE),
                Kind::Sink => p.fill(F::ZERO),
                Kind::GateB => p.fill(F::from_f64((gate_init / (1.0 - gate_init)).ln())),
                k if k.is_bias() => p.fill(F::ZERO),
                k => {
                    let std = if matches!(k, Kind::AttProjW | Kind::FcProjW) { proj_std } else { 0.02 };
                    p.iter_mut().for_each(|x| *x = F::from_f64(rng.normal() * std));
                }
            }
        }
    }

    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    /// Runs the model on idx (B, T). With targets, returns the mean cross-entropy loss. `dropout` is
    /// `None` in evaluation. Logits of every position are kept for `logits()`.
    pub fn forward(&mut self, idx: &[u32], targets: Option<&[u32]>, b: usize, t: usize, dropout: Option<Dropout>) -> Result<Option<f64>> {
        self.forward_probe(idx, targets, b, t, dropout, None)
    }

    /// `forward` with a probe that sees the activations and may modify Linear inputs (analysis, fake
    /// quantization). A probed forward must not be followed by `backward`: the saved activations are
    /// the probe's, not the model's.
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
        mut probe: Option<&mut (dyn Probe<F> + 'p)>,
    ) -> Result<Option<f64>> {
        let (c, v, nh, nl) = (self.config.n_embd, self.config.vocab_size, self.config.n_head, self.config.n_layer);
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
        self.ensure_attention_buffers();
        self.has_targets = targets.is_some() && probe.is_none();
        self.dropout = dropout;

        let p = &self.params;
        let lay = &self.layout;
        let a = &mut self.acts;
        let groups = self.config.attention.gate_groups(nh, c);
        let pr = |k: Kind, l: usize| &p[lay.layer_range(k, l, nl)];
        let bias = |k: Kind, l: usize| self.config.bias.then(|| &p[lay.layer_range(k, l, nl)]);

        timed!(self.profile, false, Op::Encoder, encoder_forward(&mut a.encoded, idx, &p[lay.range(Kind::Wte)], &p[lay.range(Kind::Wpe)], b, t, c));
        if let Some(d) = &dropout {
            timed!(self.profile, false, Op::Dropout, d.apply(site(0, Site::Embedding), &mut a.encoded[..bt * c]));
        }
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(0, Point::Embedding, &a.encoded[..bt * c]);
        }
        for l in 0..nl {
            let (lc, l3c, l4c, lr) = (l * bt * c..(l + 1) * bt * c, l * bt * 3 * c..(l + 1) * bt * 3 * c, l * bt * 4 * c..(l + 1) * bt * 4 * c, l * bt..(l + 1) * bt);
            let residual: &[F] = if l == 0 { &a.encoded[..bt * c] } else { &a.residual3[(l - 1) * bt * c..l * bt * c] };
            timed!(self.profile, false, Op::LayerNorm, layernorm_forward(&mut a.ln1[lc.clone()], &mut a.ln1_mean[lr.clone()], &mut a.ln1_rstd[lr.clone()], residual, pr(Kind::Ln1W, l), bias(Kind::Ln1B, l), bt, c));
            if let Some(pb) = probe.as_deref_mut() {
                pb.observe(l, Point::Ln1, &a.ln1[lc.clone()]);
                pb.linear_input(l, Linear::Qkv, &mut a.ln1[lc.clone()]);
            }
            timed!(self.profile, false, Op::Matmul, matmul_forward(&mut a.qkv[l3c.clone()], &a.ln1[lc.clone()], pr(Kind::QkvW, l), bias(Kind::QkvB, l), bt, c, 3 * c));
            if let Some(g) = groups {
                let (w, gb) = gate_params(&self.config, |k| pr(k, l));
                timed!(self.profile, false, Op::Matmul, matmul_forward(&mut a.gate[l * bt * g..(l + 1) * bt * g], &a.ln1[lc.clone()], w, gb, bt, c, g));
            }
            let variant = Variant::of(&self.config, pr(Kind::Sink, l));
            let attn_drop = dropout.as_ref().map(|d| (d, site(l, Site::AttentionWeights)));
            if self.store_attention {
                let att = &mut a.att[l * b * nh * t * t..(l + 1) * b * nh * t * t];
                timed!(self.profile, false, Op::Attention, attention_forward(&mut a.atty[lc.clone()], att, &a.qkv[l3c.clone()], &variant, attn_drop, b, t, c, nh));
            } else {
                let lse = &mut a.lse[l * b * nh * t..(l + 1) * b * nh * t];
                timed!(self.profile, false, Op::Attention, attention_fused::attention_forward(&mut a.atty[lc.clone()], lse, &a.qkv[l3c.clone()], &variant, attn_drop, &mut self.attn_scratch, b, t, c, nh));
            }
            let proj_in: &mut [F] = match groups {
                Some(g) => {
                    let gate = &mut a.gate[l * bt * g..(l + 1) * bt * g];
                    timed!(self.profile, false, Op::Attention, gate_forward(&mut a.attg[lc.clone()], gate, &a.atty[lc.clone()], bt, c, g));
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
            timed!(self.profile, false, Op::Matmul, matmul_forward(&mut a.proj, proj_in, pr(Kind::AttProjW, l), bias(Kind::AttProjB, l), bt, c, c));
            if let Some(d) = &dropout {
                timed!(self.profile, false, Op::Dropout, d.apply(site(l, Site::AttentionOut), &mut a.proj[..bt * c]));
            }
            if let Some(pb) = probe.as_deref_mut() {
                pb.observe(l, Point::AttnOut, &a.proj[..bt * c]);
            }
            timed!(self.profile, false, Op::Residual, add(&mut a.residual2[lc.clone()], residual, &a.proj[..bt * c]));
            timed!(self.profile, false, Op::LayerNorm, layernorm_forward(&mut a.ln2[lc.clone()], &mut a.ln2_mean[lr.clone()], &mut a.ln2_rstd[lr.clone()], &a.residual2[lc.clone()], pr(Kind::Ln2W, l), bias(Kind::Ln2B, l), bt, c));
            if let Some(pb) = probe.as_deref_mut() {
                pb.observe(l, Point::Ln2, &a.ln2[lc.clone()]);
                pb.linear_input(l, Linear::Fc, &mut a.ln2[lc.clone()]);
            }
            timed!(self.profile, false, Op::Matmul, matmul_forward(&mut a.fch[l4c.clone()], &a.ln2[lc.clone()], pr(Kind::FcW, l), bias(Kind::FcB, l), bt, c, 4 * c));
            timed!(self.profile, false, Op::Gelu, gelu_forward(&mut a.fch_gelu[l4c.clone()], &a.fch[l4c.clone()]));
            if let Some(pb) = probe.as_deref_mut() {
                pb.observe(l, Point::MlpHidden, &a.fch_gelu[l4c.clone()]);
                pb.linear_input(l, Linear::FcProj, &mut a.fch_gelu[l4c.clone()]);
            }
            timed!(self.profile, false, Op::Matmul, matmul_forward(&mut a.proj, &a.fch_gelu[l4c.clone()], pr(Kind::FcProjW, l), bias(Kind::FcProjB, l), bt, 4 * c, c));
            if let Some(d) = &dropout {
                timed!(self.profile, false, Op::Dropout, d.apply(site(l, Site::MlpOut), &mut a.proj[..bt * c]));
            }
            if let Some(pb) = probe.as_deref_mut() {
                pb.observe(l, Point::MlpOut, &a.proj[..bt * c]);
            }
            let (r2, r3) = (&a.residual2[lc.clone()], &mut a.residual3[lc.clone()]);
            timed!(self.profile, false, Op::Residual, add(r3, r2, &a.proj[..bt * c]));
            if let Some(pb) = probe.as_deref_mut() {
                pb.observe(l, Point::Residual, &a.residual3[lc.clone()]);
            }
        }
        let last = &a.residual3[(nl - 1) * bt * c..nl * bt * c];
        let lnf_b = self.config.bias.then(|| &p[lay.range(Kind::LnfB)]);
        timed!(self.profile, false, Op::LayerNorm, layernorm_forward(&mut a.lnf, &mut a.lnf_mean, &mut a.lnf_rstd, last, &p[lay.range(Kind::LnfW)], lnf_b, bt, c));
        if let Some(pb) = probe.as_deref_mut() {
            pb.observe(nl, Point::LnF, &a.lnf[..bt * c]);
        }
        timed!(self.profile, false, Op::Matmul, matmul_forward(&mut a.logits, &a.lnf, &p[lay.range(Kind::Wte)], None, bt, c, v));
        Ok(targets.map(|y| timed!(self.profile, false, Op::CrossEntropy, crossentropy_forward(&mut a.losses, &a.logits, y, bt, v))))
    }

    /// Logits (B, T, V) of the last forward.
    pub fn logits(&self) -> &[F] {
        let (b, t) = self.shape.unwrap_or((0, 0));
        &self.acts.logits[..b * t * self.config.vocab_size]
    }

    /// Activations of the last forward, for analysis: the residual stream after each block (L, B, T, C).
    pub fn residual_after_block(&self, l: usize) -> &[F] {
        let (b, t) = self.shape.unwrap_or((0, 0));
        let n = b * t * self.config.n_embd;
        &self.acts.residual3[l * n..(l + 1) * n]
    }

    /// Attention probabilities of layer l from the last forward (B, NH, T, T), before dropout.
    /// Needs `set_store_attention(true)` before the forward; empty otherwise.
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
    /// targets). With gradient accumulation over k micro-steps, loss_scale = 1/k as in nanoGPT.
    pub fn backward(&mut self, loss_scale: f64) -> Result<()> {
        on_pool(|| self.backward_body(loss_scale))
    }

    fn backward_body(&mut self, loss_scale: f64) -> Result<()> {
        let (b, t) = self.shape.filter(|_| self.has_targets).ok_or_else(|| {
            Error::Config("backward needs a preceding forward with targets".into())
        })?;
        let (c, v, nh, nl) = (self.config.n_embd, self.config.vocab_size, self.config.n_head, self.config.n_layer);
        let bt = b * t;
        self.ensure_grad_acts();
        let p = &self.params;
        let lay = &self.layout;
        let a = &self.acts;
        let g = &mut self.grad_acts;
        let dropout = self.dropout;
        let grads = &mut self.grads;
        let has_bias = self.config.bias;
        let groups = self.config.attention.gate_groups(nh, c);

        timed!(self.profile, true, Op::CrossEntropy, crossentropy_backward(&mut g.dlogits, &a.logits, &self.targets[..bt], F::from_f64(loss_scale / bt as f64), bt, v));
        let dln = &mut g.dln[..bt * c];
        dln.fill(F::ZERO);
        timed!(self.profile, true, Op::Matmul, matmul_backward(dln, &mut grads[lay.range(Kind::Wte)], None, &g.dlogits, &a.lnf, &p[lay.range(Kind::Wte)], bt, c, v));
        let dres = &mut g.dresidual[..bt * c];
        dres.fill(F::ZERO);
        let last = &a.residual3[(nl - 1) * bt * c..nl * bt * c];
        let (dlnf_w, dlnf_b) = split_pair(grads, lay.range(Kind::LnfW), lay.range(Kind::LnfB), has_bias);
        timed!(self.profile, true, Op::LayerNorm, layernorm_backward(dres, dlnf_w, dlnf_b, dln, last, &p[lay.range(Kind::LnfW)], &a.lnf_mean, &a.lnf_rstd, bt, c, &mut g.ln_scratch));

        for l in (0..nl).rev() {
            let (lc, l3c, l4c, lr) = (l * bt * c..(l + 1) * bt * c, l * bt * 3 * c..(l + 1) * bt * 3 * c, l * bt * 4 * c..(l + 1) * bt * 4 * c, l * bt..(l + 1) * bt);
            let residual: &[F] = if l == 0 { &a.encoded[..bt * c] } else { &a.residual3[(l - 1) * bt * c..l * bt * c] };
            let r = |k: Kind| lay.layer_range(k, l, nl);

            // MLP branch: residual3 = residual2 + drop(c_proj(gelu(c_fc(ln_2(residual2)))))
            let dproj = timed!(self.profile, true, Op::Dropout, undo_dropout(&mut g.dproj, &g.dresidual[..bt * c], dropout.as_ref(), site(l, Site::MlpOut)));
            let dfg = &mut g.dfch_gelu[..bt * 4 * c];
            dfg.fill(F::ZERO);
            let (dw, db) = split_pair(grads, r(Kind::FcProjW), r(Kind::FcProjB), has_bias);
            timed!(self.profile, true, Op::Matmul, matmul_backward(dfg, dw, db, dproj, &a.fch_gelu[l4c.clone()], &p[r(Kind::FcProjW)], bt, 4 * c, c));
            let dfch = &mut g.dfch[..bt * 4 * c];
            dfch.fill(F::ZERO);
            timed!(self.profile, true, Op::Gelu, gelu_backward(dfch, &a.fch[l4c.clone()], &g.dfch_gelu[..bt * 4 * c]));
            let dln = &mut g.dln[..bt * c];
            dln.fill(F::ZERO);
            let (dw, db) = split_pair(grads, r(Kind::FcW), r(Kind::FcB), has_bias);
            timed!(self.profile, true, Op::Matmul, matmul_backward(dln, dw, db, &g.dfch[..bt * 4 * c], &a.ln2[lc.clone()], &p[r(Kind::FcW)], bt, c, 4 * c));
            let (dw, db) = split_pair(grads, r(Kind::Ln2W), r(Kind::Ln2B), has_bias);
            timed!(self.profile, true, Op::LayerNorm, layernorm_backward(&mut g.dresidual[..bt * c], dw, db, &g.dln[..bt * c], &a.residual2[lc.clone()], &p[r(Kind::Ln2W)], &a.ln2_mean[lr.clone()], &a.ln2_rstd[lr.clone()], bt, c, &mut g.ln_scratch));

            // attention branch: residual2 = residual + drop(c_proj(attn(ln_1(residual))))
            let dproj = timed!(self.profile, true, Op::Dropout, undo_dropout(&mut g.dproj, &g.dresidual[..bt * c], dropout.as_ref(), site(l, Site::AttentionOut)));
            let datty = &mut g.datty[..bt * c];
            datty.fill(F::ZERO);
            let (dw, db) = split_pair(grads, r(Kind::AttProjW), r(Kind::AttProjB), has_bias);
            let proj_in = if groups.is_some() { &a.attg[lc.clone()] } else { &a.atty[lc.clone()] };
            timed!(self.profile, true, Op::Matmul, matmul_backward(datty, dw, db, dproj, proj_in, &p[r(Kind::AttProjW)], bt, c, c));
            // through the gate: ∂L/∂(core output) into dattc, ∂L/∂(gate logits) into dgate
            let dcore: &[F] = match groups {
                Some(gg) => {
                    let dattc = &mut g.dattc[..bt * c];
                    dattc.fill(F::ZERO);
                    let gate = &a.gate[l * bt * gg..(l + 1) * bt * gg];
                    timed!(self.profile, true, Op::Attention, gate_backward(dattc, &mut g.dgate[..bt * gg], &g.datty[..bt * c], &a.atty[lc.clone()], gate, bt, c, gg));
                    &g.dattc[..bt * c]
                }
                None => &g.datty[..bt * c],
            };
            let dqkv = &mut g.dqkv[..bt * 3 * c];
            dqkv.fill(F::ZERO);
            let variant = Variant::of(&self.config, &p[r(Kind::Sink)]);
            let dnull = (self.config.attention == AttentionKind::Sink).then(|| &mut g.dnull[..b * nh]);
            let attn_drop = dropout.as_ref().map(|d| (d, site(l, Site::AttentionWeights)));
            if self.store_attention {
                let att = &a.att[l * b * nh * t * t..(l + 1) * b * nh * t * t];
                timed!(self.profile, true, Op::Attention, attention_backward(dqkv, dnull, &mut g.datt_row, dcore, &a.qkv[l3c.clone()], att, &variant, attn_drop, b, t, c, nh));
            } else {
                let lse = &a.lse[l * b * nh * t..(l + 1) * b * nh * t];
                timed!(self.profile, true, Op::Attention, attention_fused::attention_backward(dqkv, dnull, dcore, &a.qkv[l3c.clone()], lse, &variant, attn_drop, &mut self.attn_scratch, b, t, c, nh));
            }
            if self.config.attention == AttentionKind::Sink {
                // ∂L/∂σ_h = Σ over sequences (in order) of the kernel's per-sequence parts
                let ds = &mut grads[r(Kind::Sink)];
                for bi in 0..b {
                    for (d, &x) in ds.iter_mut().zip(&g.dnull[bi * nh..(bi + 1) * nh]) {
                        *d += x;
                    }
                }
            }
            let dln = &mut g.dln[..bt * c];
            dln.fill(F::ZERO);
            let (dw, db) = split_pair(grads, r(Kind::QkvW), r(Kind::QkvB), has_bias);
            timed!(self.profile, true, Op::Matmul, matmul_backward(dln, dw, db, &g.dqkv[..bt * 3 * c], &a.ln1[lc.clone()], &p[r(Kind::QkvW)], bt, c, 3 * c));
            if let Some(gg) = groups {
                // the gate's linear map reads ln_1 too: its input gradient adds to c_attn's
                let (wk, bk) = gate_kinds(self.config.attention);
                let (dw, db) = split_pair(grads, r(wk), r(bk), true);
                timed!(self.profile, true, Op::Matmul, matmul_backward(dln, dw, db, &g.dgate[..bt * gg], &a.ln1[lc.clone()], &p[r(wk)], bt, c, gg));
            }
            let (dw, db) = split_pair(grads, r(Kind::Ln1W), r(Kind::Ln1B), has_bias);
            timed!(self.profile, true, Op::LayerNorm, layernorm_backward(&mut g.dresidual[..bt * c], dw, db, &g.dln[..bt * c], residual, &p[r(Kind::Ln1W)], &a.ln1_mean[lr.clone()], &a.ln1_rstd[lr.clone()], bt, c, &mut g.ln_scratch));
        }
        let dres = &mut g.dresidual[..bt * c];
        if let Some(d) = &dropout {
            timed!(self.profile, true, Op::Dropout, d.apply(site(0, Site::Embedding), dres));
        }
        let (dwte, dwpe) = split_pair(grads, lay.range(Kind::Wte), lay.range(Kind::Wpe), true);
        timed!(self.profile, true, Op::Encoder, encoder_backward(dwte, dwpe.expect("wpe always exists"), dres, &self.idx[..bt], b, t, c));
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

    fn ensure_attention_buffers(&mut self) {
        let (l, t, nh, b) = (self.config.n_layer, self.config.block_size, self.config.n_head, self.max_batch);
        if self.store_attention {
            if self.acts.att.is_empty() {
                self.acts.att = vec![F::ZERO; l * b * nh * t * t];
            }
        } else {
            let need = rayon::current_num_threads() * attention_fused::scratch_per_thread(t);
            if self.attn_scratch.len() < need {
                self.attn_scratch = vec![F::ZERO; need];
            }
        }
    }

    /// Gradient buffers are made on the first backward, so that inference-only models do not pay for them.
    fn ensure_grad_acts(&mut self) {
        if !self.grad_acts.dresidual.is_empty() {
            return;
        }
        let (c, t, v, nh, b) =
            (self.config.n_embd, self.config.block_size, self.config.vocab_size, self.config.n_head, self.max_batch);
        let bt = b * t;
        let g = self.config.attention.gate_groups(nh, c).unwrap_or(0);
        let z = |n: usize| vec![F::ZERO; n];
        self.grad_acts = GradActs {
            dresidual: z(bt * c),
            dproj: z(bt * c),
            dln: z(bt * c),
            datty: z(bt * c),
            dattc: if g > 0 { z(bt * c) } else { Vec::new() },
            dgate: z(bt * g),
            dnull: z(b * nh),
            dqkv: z(bt * 3 * c),
            dfch_gelu: z(bt * 4 * c),
            dfch: z(bt * 4 * c),
            datt_row: z(backward_scratch(b, t, nh)),
            dlogits: z(bt * v),
            ln_scratch: Vec::new(),
        };
    }

    /// The parameter tensor `name` (nanoGPT naming).
    pub fn tensor(&self, name: &str) -> Option<&[F]> {
        self.layout.find(name).map(|t| &self.params[t.offset..t.offset + t.len])
    }

    pub fn grad(&self, name: &str) -> Option<&[F]> {
        self.layout.find(name).map(|t| &self.grads[t.offset..t.offset + t.len])
    }
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

/// out = a + b (the residual add).
/// Runs `f` on a worker of the rayon pool. Called from outside the pool, every parallel kernel would
/// wake the pool and put the calling thread to sleep until it is done (two context switches per kernel,
/// hundreds per step); from a worker, the kernels fork and join inside the pool.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

fn add<F: Real>(out: &mut [F], a: &[F], b: &[F]) {
    use rayon::prelude::*;
    out.par_chunks_mut(4096).zip(a.par_chunks(4096)).zip(b.par_chunks(4096)).for_each(|((o, a), b)| {
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    });
}

/// ∂L/∂(c_proj output) from ∂L/∂(residual): the same gradient, times the dropout mask if any.
fn undo_dropout<'a, F: Real>(buf: &'a mut [F], dres: &'a [F], dropout: Option<&Dropout>, s: u64) -> &'a [F] {
    match dropout {
        None => dres,
        Some(d) => {
            let n = dres.len();
            buf[..n].copy_from_slice(dres);
            d.apply(s, &mut buf[..n]);
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
