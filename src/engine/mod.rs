//! The seam between the trainer and an engine: the whole training step, as llm.c has `train_gpt2.c`
//! beside `train_gpt2.cu`. The trainer, bench, checkpoints and the golden tests talk to an engine only
//! through this trait; what is inside (kernels, buffers, threads, a GPU) is the engine's own business.
//!
//! An engine owns the parameters, their gradients and the optimizer's state (AdamW's two moments, or
//! SGD's momentum buffer), in its own memory and precision. The host sees them as f32 snapshots laid out by `ParamLayout` (nanoGPT's names), through
//! `read` and `write`: that is how checkpoints are saved and loaded and how initial weights get in.
//!
//! Determinism contract. The CPU engine (`cpu::CpuEngine`, the reference) is bitwise deterministic for
//! a given seed and thread count: every reduction has a fixed order. Across thread counts only the
//! last bits move (the order of the per-shard gradient sum, and GEMM blocking). Any other engine is held
//! to the CPU engine within a stated tolerance (the golden files' tolerances for f32; see tests/engines.rs),
//! not bitwise.

pub mod cpu;
pub mod cuda;
pub mod dropout;
pub mod params;
pub mod profile;

use crate::config::ModelConfig;
use crate::{Error, Result};
use dropout::Dropout;
use params::ParamLayout;
use profile::Profile;

/// The named host-visible buffers of an engine, each laid out by the engine's `ParamLayout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// The parameters.
    Params,
    /// ∂loss/∂params, accumulated by `backward` since the last `zero_grad`.
    Grads,
    /// AdamW's first moment (`exp_avg`), or SGD's momentum buffer (`momentum_buffer`).
    AdamM,
    /// AdamW's second moment (`exp_avg_sq`); unused (zero) under SGD.
    AdamV,
}

/// One batch of token ids: `idx` (B, T) and, for a loss, `targets` (B, T).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub idx: &'a [u32],
    pub targets: Option<&'a [u32]>,
    pub b: usize,
    pub t: usize,
}

/// AdamW's hyper-parameters (the learning rate comes with each step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// SGD's hyper-parameters (the learning rate comes with each step): torch.optim.SGD with dampening 0
/// and no Nesterov, `weight_decay` the L2 term added to the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub momentum: f64,
    pub weight_decay: f64,
}

/// The optimizer of a step and its hyper-parameters. Every engine implements each kind, with nanoGPT's
/// groups (weight decay only on tensors of 2+ dimensions):
///
/// - `AdamW` (torch.optim.AdamW): p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
///   p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps). State: m in `Buffer::AdamM`, v in `Buffer::AdamV`.
/// - `Sgd` (torch.optim.SGD): g ← g + wd·p; buf ← g at the first step, else momentum·buf + g;
///   p ← p − lr·buf. State: buf in `Buffer::AdamM`.
///
/// The state of one kind means nothing to the other: an engine refuses a step of another kind than the
/// steps before it, and a checkpoint records which optimizer wrote its state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimConfig {
    AdamW(AdamWConfig),
    Sgd(SgdConfig),
}

impl OptimConfig {
    /// "adamw" or "sgd" (the `optimizer` key's values).
    pub fn name(&self) -> &'static str {
        match self {
            OptimConfig::AdamW(_) => "adamw",
            OptimConfig::Sgd(_) => "sgd",
        }
    }
}

impl From<AdamWConfig> for OptimConfig {
    fn from(hp: AdamWConfig) -> Self {
        OptimConfig::AdamW(hp)
    }
}

impl From<SgdConfig> for OptimConfig {
    fn from(hp: SgdConfig) -> Self {
        OptimConfig::Sgd(hp)
    }
}

/// A training engine: forward, backward, the optimizer step, and host access to its buffers.
pub trait Engine: Send {
    /// "cpu", "cuda", … (what `--device` names).
    fn device(&self) -> &'static str;

    /// The model the engine runs.
    fn config(&self) -> &ModelConfig;

    /// Where each named tensor sits in the flat buffers.
    fn layout(&self) -> &ParamLayout;

    /// The largest batch (B) a forward may take; T is at most `config().block_size`.
    fn max_batch(&self) -> usize;

    /// Runs the model on a batch; with targets, returns the mean cross-entropy loss (in f64). `dropout`
    /// is `None` in evaluation. Keeps what the following `backward` needs.
    fn forward(&mut self, batch: Batch<'_>, dropout: Option<Dropout>) -> Result<Option<f64>>;

    /// Adds ∂(loss_scale · loss)/∂params of the last forward (which must have had targets) to the
    /// gradients. One backward per forward: it uses up that forward's activations.
    fn backward(&mut self, loss_scale: f64) -> Result<()>;

    /// Sets the gradients to zero.
    fn zero_grad(&mut self);

    /// Clips the gradients to a global L2 norm of `grad_clip` (0: no clipping), then takes one step of
    /// the optimizer `opt` at learning rate `lr` (see `OptimConfig`). Returns the gradient norm before
    /// clipping. An error, changing nothing, if earlier steps of this engine were of another optimizer.
    fn step(&mut self, lr: f64, opt: &OptimConfig, grad_clip: f64) -> Result<f64>;

    /// The optimizer's step count (AdamW's bias correction; SGD's first step, which sets the momentum
    /// buffer to the gradient).
    fn adam_step(&self) -> u64;

    /// Sets the optimizer's step count (a resumed run continues it).
    fn set_adam_step(&mut self, step: u64);

    /// Copies a buffer to the host; `out` has `layout().total` elements.
    fn read(&self, buffer: Buffer, out: &mut [f32]) -> Result<()>;

    /// Overwrites a buffer from the host; `data` has `layout().total` elements.
    fn write(&mut self, buffer: Buffer, data: &[f32]) -> Result<()>;

    /// Copies the logits (B, T, V) of the last forward to the host (before a backward, which may
    /// overwrite them); `out` is resized to fit.
    fn read_logits(&self, out: &mut Vec<f32>) -> Result<()>;

    /// The device's peak rate in FLOP/s for MFU, where the engine knows it (a GPU's datasheet bf16 or
    /// f32 peak); None where it must be measured (the CPU engine: see `cpu::flops::gemm_peak_gflops`).
    fn peak_flops(&self) -> Option<f64> {
        None
    }

    /// Kernel times accumulated since the last `reset_profile`, where the engine measures them.
    fn profile(&self) -> Option<&Profile> {
        None
    }

    fn reset_profile(&mut self) {}

    /// Runs `f` in the engine's execution context: the CPU engine runs it on a worker of its thread
    /// pool, so that every kernel of a whole step forks and joins inside the pool instead of waking it.
    fn run(&mut self, f: &mut (dyn FnMut(&mut dyn Engine) -> Result<f64> + Send)) -> Result<f64>;

    /// A buffer as a new host vector.
    fn snapshot(&self, buffer: Buffer) -> Result<Vec<f32>> {
        let mut v = vec![0.0; self.layout().total];
        self.read(buffer, &mut v)?;
        Ok(v)
    }

    fn num_params(&self) -> usize {
        self.layout().total
    }
}

/// The devices an engine can be made for, by `create`.
pub const DEVICES: [&str; 2] = ["cpu", "cuda"];

/// The one place that chooses an engine: a zero-initialised engine for `config` on `device`, able to
/// run batches of up to `max_batch` sequences, in the device's default arithmetic (`dtype = "auto"`).
pub fn create(device: &str, config: ModelConfig, max_batch: usize) -> Result<Box<dyn Engine>> {
    create_with(device, "auto", config, max_batch)
}

/// `create` in the arithmetic `dtype` ("auto", "bfloat16", "float32"; see `Config::dtype`).
pub fn create_with(device: &str, dtype: &str, config: ModelConfig, max_batch: usize) -> Result<Box<dyn Engine>> {
    crate::config::check_device(device)?;
    crate::config::check_dtype(device, dtype)?;
    match device {
        "cpu" => {
            config.validate()?;
            cpu::memory::check_model(&config, max_batch, 4, cpu::memory::Use::Training)?;
            Ok(Box::new(cpu::CpuEngine::<f32>::new(config, max_batch)?))
        }
        _ => {
            let ordinal = device.strip_prefix("cuda:").map_or(Ok(0), |n| n.parse::<usize>());
            let ordinal = ordinal.map_err(|_| Error::Config(format!("device '{device}': expected cuda:N")))?;
            let precision = if dtype == "float32" { cuda::plan::Precision::F32 } else { cuda::plan::Precision::Bf16 };
            cuda_engine(ordinal, precision, config, max_batch)
        }
    }
}

/// Whether `device` can run here: Ok for "cpu"; for "cuda[:N]", the GPU and its libraries are found,
/// or an error names what is missing (cheap: no engine is made).
pub fn probe(device: &str) -> Result<()> {
    crate::config::check_device(device)?;
    match device {
        "cpu" => Ok(()),
        _ => {
            let ordinal = device.strip_prefix("cuda:").map_or(Ok(0), |n| n.parse::<usize>());
            let ordinal = ordinal.map_err(|_| Error::Config(format!("device '{device}': expected cuda:N")))?;
            cuda::device::probe_gpu(ordinal).map(|_| ())
        }
    }
}

/// The GPU engine on GPU `ordinal`: the plan (`cuda::engine::PlanEngine`) on the CUDA executor.
fn cuda_engine(
    ordinal: usize,
    precision: cuda::plan::Precision,
    config: ModelConfig,
    max_batch: usize,
) -> Result<Box<dyn Engine>> {
    config.validate()?;
    let exec = cuda::device::CudaExecutor::on(ordinal, precision)?;
    Ok(Box::new(cuda::engine::PlanEngine::new(config, max_batch, exec)?))
}

/// Checks a host buffer's length against the layout (for `read`/`write` implementations).
pub fn check_len(buffer: Buffer, len: usize, layout: &ParamLayout) -> Result<()> {
    if len == layout.total {
        Ok(())
    } else {
        Err(Error::Config(format!("{buffer:?}: a host buffer of {len} elements, but the model has {}", layout.total)))
    }
}
