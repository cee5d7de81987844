//! The GPT of nanoGPT's `model.py` on the CPU: the model's buffers and its entry points (forward,
//! backward, logits, attention probabilities). The passes themselves are in `pass`, one kernel call per
//! line; the batch runs as one shard per worker thread (see `shard`).
//!
//! Parameters and gradients are one flat buffer each (see `params`); every activation buffer is sized
//! once for (max_batch, block_size) (see `acts`), so a training step allocates nothing.

use super::acts::{Acts, GradActs, ShardState};
use super::attention_fused;
use super::memory::{self, Use};
use super::pass::{backward_shard, forward_shard, Ctx};
use super::probe::{Probe, Tap};
use super::real::Real;
use super::shard::{for_each_shard, on_pool, Shard};
use crate::config::ModelConfig;
use crate::engine::dropout::Dropout;
use crate::engine::params::{init_params, ParamLayout};
use crate::engine::profile::Profile;
use crate::rng::Rng;
use crate::{Error, Result};

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
        memory::check_model(&config, max_batch, std::mem::size_of::<F>(), Use::Inference)?;
        let layout = ParamLayout::new(&config);
        let bt = max_batch * config.block_size;
        let (acts, grad_acts) = (Acts::new(&config, max_batch), GradActs::none());
        Ok(Gpt {
            params: vec![F::ZERO; layout.total],
            grads: vec![F::ZERO; layout.total],
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
            forward_shard(&cx, acts, &mut self.shard_state[0], Shard { seqs: 0..b }, Tap(probe));
        } else {
            let f = |(a, st): (Acts<&mut [F]>, &mut [ShardState<F>]), sh: Shard| {
                forward_shard(&cx, a, &mut st[0], sh, Tap(None))
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
        self.grad_acts.ensure(&self.config, self.max_batch);
        if self.dropout.is_some() {
            self.grad_acts.ensure_dropout(&self.config, self.max_batch);
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
        type Part<'a, F> = ((Acts<&'a mut [F]>, GradActs<&'a mut [F]>), &'a mut [ShardState<F>]);
        let f = |((a, g), st): Part<F>, sh: Shard| backward_shard(&cx, a, g, &mut st[0], sh, dloss);
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
