//! `PlanEngine`: the `Engine` of the GPU plan over any executor — the CUDA one (`--device cuda`) or the
//! CPU replay (the tests). The host keeps only the shapes, the step count and the token ids of the last
//! forward; everything else lives in the executor's buffers.

use super::build::backward::{backward, buckets};
use super::build::forward::forward;
use super::build::{step, Bufs, Builder};
use super::plan::{Op, Plan, View};
use super::Executor;
use crate::config::ModelConfig;
use crate::engine::dropout::Dropout;
use crate::engine::params::ParamLayout;
use crate::engine::{check_len, Batch, Buffer, Engine, OptimConfig};
use crate::{Error, Result};

pub struct PlanEngine<E: Executor> {
    config: ModelConfig,
    layout: ParamLayout,
    plan: Plan,
    bufs: Bufs,
    exec: E,
    max_batch: usize,
    /// (B, T) of the last forward, and whether it had targets and has not been used by a backward.
    shape: Option<(usize, usize)>,
    has_targets: bool,
    dropout: Option<Dropout>,
    buckets: usize,
    step: u64,
    stepped_with: Option<&'static str>,
    /// An error of a call that cannot return one (`zero_grad`), returned by the next call that can.
    deferred: Option<Error>,
}

/// The largest element count a kernel's int argument may carry.
const INT_MAX: u64 = i32::MAX as u64;

impl<E: Executor> PlanEngine<E> {
    /// A zero-initialised engine for `config` and batches of up to `max_batch`, on `exec`.
    pub fn new(config: ModelConfig, max_batch: usize, mut exec: E) -> Result<Self> {
        config.validate()?;
        if max_batch == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        let (b, t, nh, c, v) = (
            max_batch as u64,
            config.block_size as u64,
            config.n_head as u64,
            config.n_embd as u64,
            config.vocab_size as u64,
        );
        let layout = ParamLayout::new(&config);
        for (what, n) in
            [("B·NH·T·T attention weights", b * nh * t * t), ("B·T·V logits", b * t * v), ("B·T·4C", b * t * 4 * c)]
        {
            if n > INT_MAX {
                return Err(Error::Config(format!(
                    "{what} of a batch of {max_batch} make {n} elements, more than a kernel indexes (2^31 − 1): lower batch_size (use gradient_accumulation_steps) or block_size"
                )));
            }
        }
        let mut plan = Plan::default();
        let bufs = Bufs::new(&mut plan, &config, layout.total, max_batch);
        exec.alloc(&plan.bufs)?;
        Ok(PlanEngine {
            config,
            layout,
            plan,
            bufs,
            exec,
            max_batch,
            shape: None,
            has_targets: false,
            dropout: None,
            buckets: 0,
            step: 0,
            stepped_with: None,
            deferred: None,
        })
    }

    pub fn executor(&self) -> &E {
        &self.exec
    }

    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.exec
    }

    /// The buffers (their names, types and sizes) the engine allocated.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn bufs(&self) -> &Bufs {
        &self.bufs
    }

    /// The ops of a forward (and, with `backward`, the backward after it) of a (b, t) batch: what
    /// `forward` and `backward` run (for the self-test's op-by-op comparison and for FLOP counts).
    pub fn ops(&self, b: usize, t: usize, targets: bool, dropout: Option<Dropout>, backward_too: bool) -> Vec<Op> {
        let mut bl = Builder::new(&self.config, &self.layout, &self.bufs, b, t);
        forward(&mut bl, dropout, targets);
        if backward_too {
            backward(&mut bl, dropout, 1.0 / (b * t) as f32, self.buckets);
        }
        bl.ops
    }

    fn take_deferred(&mut self) -> Result<()> {
        self.deferred.take().map_or(Ok(()), Err)
    }

    fn view(&self, buffer: Buffer) -> View {
        match buffer {
            Buffer::Params => self.bufs.params,
            Buffer::Grads => self.bufs.grads,
            Buffer::AdamM => self.bufs.m,
            Buffer::AdamV => self.bufs.v,
        }
    }

    fn check_batch(&self, batch: &Batch) -> Result<()> {
        let (b, t, v) = (batch.b, batch.t, self.config.vocab_size);
        if b == 0 || b > self.max_batch || t == 0 || t > self.config.block_size {
            return Err(Error::Config(format!(
                "batch of {b}x{t} does not fit the model (max batch {}, block_size {})",
                self.max_batch, self.config.block_size
            )));
        }
        let bt = b * t;
        if batch.idx.len() != bt || batch.targets.is_some_and(|y| y.len() != bt) {
            return Err(Error::Data(format!("expected {bt} tokens for a {b}x{t} batch")));
        }
        for &tok in batch.idx.iter().chain(batch.targets.unwrap_or(&[])) {
            if tok as usize >= v {
                return Err(Error::Data(format!("token id {tok} is outside the vocabulary of {v}")));
            }
        }
        Ok(())
    }
}

impl<E: Executor> Engine for PlanEngine<E> {
    fn device(&self) -> &'static str {
        self.exec.name()
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn forward(&mut self, batch: Batch<'_>, dropout: Option<Dropout>) -> Result<Option<f64>> {
        self.take_deferred()?;
        self.check_batch(&batch)?;
        let (b, t) = (batch.b, batch.t);
        let n = b * t;
        self.shape = None;
        self.exec.upload_u32(self.bufs.idx.sub(0, n), batch.idx)?;
        if let Some(y) = batch.targets {
            self.exec.upload_u32(self.bufs.targets.sub(0, n), y)?;
            let (start, pos, tokens) = buckets(batch.idx, self.config.vocab_size);
            self.exec.upload_u32(self.bufs.bucket_start.sub(0, start.len()), &start)?;
            self.exec.upload_u32(self.bufs.bucket_pos.sub(0, n), &pos)?;
            self.exec.upload_u32(self.bufs.bucket_token.sub(0, tokens.len()), &tokens)?;
            self.buckets = tokens.len();
        }
        let ops = self.ops(b, t, batch.targets.is_some(), dropout, false);
        self.exec.run(&ops)?;
        self.shape = Some((b, t));
        self.has_targets = batch.targets.is_some();
        self.dropout = dropout;
        if batch.targets.is_none() {
            return Ok(None);
        }
        let mut losses = vec![0.0f32; n];
        self.exec.download(self.bufs.losses.sub(0, n), &mut losses)?;
        // mean over the batch, summed in f64 in order (as the CPU engine)
        Ok(Some(losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64))
    }

    fn backward(&mut self, loss_scale: f64) -> Result<()> {
        self.take_deferred()?;
        let (b, t) = self.shape.filter(|_| self.has_targets).ok_or_else(|| {
            Error::Config("backward needs a forward with targets before it, one forward per backward (backward overwrites activations it has used)".into())
        })?;
        self.has_targets = false;
        let mut bl = Builder::new(&self.config, &self.layout, &self.bufs, b, t);
        backward(&mut bl, self.dropout, (loss_scale / (b * t) as f64) as f32, self.buckets);
        let ops = bl.ops;
        self.exec.run(&ops)
    }

    fn zero_grad(&mut self) {
        if let Err(e) = self.exec.run(&[Op::Zero(self.bufs.grads)]) {
            self.deferred.get_or_insert(e);
        }
    }

    fn step(&mut self, lr: f64, opt: &OptimConfig, grad_clip: f64) -> Result<f64> {
        self.take_deferred()?;
        if let Some(prev) = self.stepped_with.filter(|p| *p != opt.name()) {
            return Err(Error::Config(format!(
                "this engine's optimizer state is {prev}'s; a {} step cannot continue it (start a new run, or keep optimizer = \"{prev}\")",
                opt.name()
            )));
        }
        let total = self.layout.total;
        self.exec.run(&step::norm(&self.bufs, total))?;
        let mut parts = vec![0.0f32; self.bufs.norm_part.len];
        self.exec.download(self.bufs.norm_part, &mut parts)?;
        let norm = parts.iter().map(|&x| x as f64).sum::<f64>().sqrt();
        if grad_clip > 0.0 {
            let max_norm = grad_clip as f32 as f64;
            let coef = (max_norm / (norm + 1e-6)).min(1.0) as f32;
            self.exec.run(&step::scale(&self.bufs, total, coef))?;
        }
        let ops = match opt {
            OptimConfig::AdamW(hp) => step::adamw(&self.bufs, &self.layout, lr, hp, self.step + 1),
            OptimConfig::Sgd(hp) => step::sgd(&self.bufs, &self.layout, lr, hp, self.step == 0),
        };
        self.exec.run(&ops)?;
        self.step += 1;
        self.stepped_with = Some(opt.name());
        Ok(norm)
    }

    fn adam_step(&self) -> u64 {
        self.step
    }

    fn set_adam_step(&mut self, step: u64) {
        self.step = step;
    }

    fn read(&self, buffer: Buffer, out: &mut [f32]) -> Result<()> {
        check_len(buffer, out.len(), &self.layout)?;
        self.exec.download(self.view(buffer), out)
    }

    fn write(&mut self, buffer: Buffer, data: &[f32]) -> Result<()> {
        self.take_deferred()?;
        check_len(buffer, data.len(), &self.layout)?;
        self.exec.upload(self.view(buffer), data)?;
        if buffer == Buffer::Params {
            self.exec.run(&step::cast_params(&self.bufs, self.layout.total))?;
        }
        Ok(())
    }

    fn read_logits(&self, out: &mut Vec<f32>) -> Result<()> {
        let (b, t) = self.shape.ok_or_else(|| Error::Config("read_logits needs a forward before it".into()))?;
        let n = b * t * self.config.vocab_size;
        out.resize(n, 0.0);
        self.exec.download(self.bufs.logits.sub(0, n), out)
    }

    fn run(&mut self, f: &mut (dyn FnMut(&mut dyn Engine) -> Result<f64> + Send)) -> Result<f64> {
        f(self)
    }

    fn peak_flops(&self) -> Option<f64> {
        self.exec.peak_flops()
    }
}
