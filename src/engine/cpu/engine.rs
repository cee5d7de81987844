//! The CPU engine: the reference implementation of `engine::Engine`. The model (`Gpt`: kernels over
//! preallocated buffers, one shard of the batch per worker thread) and its optimizer state (AdamW's
//! moments, or SGD's momentum buffer in the first of them), in precision F (f32 for training, f64 for
//! the reference tests).

use super::adamw::{clip_grad_norm, AdamW};
use super::gpt::Gpt;
use super::memory;
use super::probe::Probe;
use super::real::Real;
use super::sgd::sgd_update;
use super::shard::on_pool;
use crate::config::ModelConfig;
use crate::engine::dropout::Dropout;
use crate::engine::params::ParamLayout;
use crate::engine::profile::Profile;
use crate::engine::{check_len, Batch, Buffer, Engine, OptimConfig};
use crate::{Error, Result};

pub struct CpuEngine<F: Real = f32> {
    model: Gpt<F>,
    /// The optimizer state: AdamW's m and v, or SGD's momentum buffer in m; the step count.
    opt: AdamW<F>,
    /// The optimizer of this engine's steps so far ("adamw", "sgd"), which later steps must keep.
    stepped_with: Option<&'static str>,
}

impl<F: Real> CpuEngine<F> {
    /// A model with all parameters zero (see `Engine::write` or `model_mut().init`) and AdamW at step 0.
    pub fn new(config: ModelConfig, max_batch: usize) -> Result<Self> {
        let model = Gpt::new(config, max_batch)?;
        let opt = AdamW::new(&model.layout);
        Ok(CpuEngine { model, opt, stepped_with: None })
    }

    /// Bytes a training engine of `config` for batches of up to `max_batch` needs (parameters, gradients,
    /// AdamW's moments, activations; see `memory`), in checked arithmetic: `u64::MAX` when it overflows.
    pub fn memory_estimate(config: &ModelConfig, max_batch: usize) -> u64 {
        memory::estimate(config, max_batch, std::mem::size_of::<F>(), memory::Use::Training)
    }

    /// An engine around a model, with fresh AdamW state.
    pub fn from_model(model: Gpt<F>) -> Self {
        let opt = AdamW::new(&model.layout);
        CpuEngine { model, opt, stepped_with: None }
    }

    /// The model, for what only the reference engine offers: probes (analysis, fake quantization),
    /// stored attention probabilities, sampling.
    pub fn model(&self) -> &Gpt<F> {
        &self.model
    }

    pub fn model_mut(&mut self) -> &mut Gpt<F> {
        &mut self.model
    }

    pub fn into_model(self) -> Gpt<F> {
        self.model
    }

    /// A model (for inference on the reference engine) holding the host parameters `params`.
    pub fn model_with(config: ModelConfig, max_batch: usize, params: &[f32]) -> Result<Gpt<F>> {
        let mut engine = Self::new(config, max_batch)?;
        engine.write(Buffer::Params, params)?;
        Ok(engine.into_model())
    }

    /// `forward` with a probe (see `Gpt::forward_probe`).
    pub fn forward_probe(&mut self, batch: Batch<'_>, probe: Option<&mut (dyn Probe<F> + '_)>) -> Result<Option<f64>> {
        self.model.forward_probe(batch.idx, batch.targets, batch.b, batch.t, None, probe)
    }

    fn buffer(&self, buffer: Buffer) -> &[F] {
        match buffer {
            Buffer::Params => &self.model.params,
            Buffer::Grads => &self.model.grads,
            Buffer::AdamM => &self.opt.m,
            Buffer::AdamV => &self.opt.v,
        }
    }

    fn buffer_mut(&mut self, buffer: Buffer) -> &mut [F] {
        match buffer {
            Buffer::Params => &mut self.model.params,
            Buffer::Grads => &mut self.model.grads,
            Buffer::AdamM => &mut self.opt.m,
            Buffer::AdamV => &mut self.opt.v,
        }
    }
}

impl<F: Real> Engine for CpuEngine<F> {
    fn device(&self) -> &'static str {
        "cpu"
    }

    fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    fn layout(&self) -> &ParamLayout {
        &self.model.layout
    }

    fn max_batch(&self) -> usize {
        self.model.max_batch
    }

    fn forward(&mut self, batch: Batch<'_>, dropout: Option<Dropout>) -> Result<Option<f64>> {
        self.model.forward(batch.idx, batch.targets, batch.b, batch.t, dropout)
    }

    fn backward(&mut self, loss_scale: f64) -> Result<()> {
        self.model.backward(loss_scale)
    }

    fn zero_grad(&mut self) {
        self.model.zero_grad();
    }

    fn step(&mut self, lr: f64, opt: &OptimConfig, grad_clip: f64) -> Result<f64> {
        if let Some(before) = self.stepped_with.filter(|&b| b != opt.name()) {
            return Err(Error::Config(format!(
                "a {} step on an engine whose optimizer state was made by {before}: the two optimizers' states \
                 mean different things; keep optimizer = \"{before}\"",
                opt.name()
            )));
        }
        self.stepped_with = Some(opt.name());
        let norm = clip_grad_norm(&mut self.model.grads, grad_clip);
        let Gpt { params, grads, layout, .. } = &mut self.model;
        match opt {
            OptimConfig::AdamW(hp) => self.opt.update(params, grads, layout, lr, hp),
            OptimConfig::Sgd(hp) => {
                self.opt.step += 1;
                sgd_update(params, grads, &mut self.opt.m, self.opt.step == 1, layout, lr, hp);
            }
        }
        Ok(norm)
    }

    fn adam_step(&self) -> u64 {
        self.opt.step
    }

    fn set_adam_step(&mut self, step: u64) {
        self.opt.step = step;
    }

    fn read(&self, buffer: Buffer, out: &mut [f32]) -> Result<()> {
        check_len(buffer, out.len(), self.layout())?;
        for (o, x) in out.iter_mut().zip(self.buffer(buffer)) {
            *o = x.to_f64() as f32;
        }
        Ok(())
    }

    fn write(&mut self, buffer: Buffer, data: &[f32]) -> Result<()> {
        check_len(buffer, data.len(), self.layout())?;
        for (x, d) in self.buffer_mut(buffer).iter_mut().zip(data) {
            *x = F::from_f64(*d as f64);
        }
        Ok(())
    }

    fn read_logits(&self, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend(self.model.logits().iter().map(|x| x.to_f64() as f32));
        Ok(())
    }

    fn profile(&self) -> Option<&Profile> {
        Some(&self.model.profile)
    }

    fn reset_profile(&mut self) {
        self.model.profile.reset();
    }

    fn run(&mut self, f: &mut (dyn FnMut(&mut dyn Engine) -> Result<f64> + Send)) -> Result<f64> {
        on_pool(|| f(self))
    }
}
