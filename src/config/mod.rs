//! Every setting of a run in one flat serde struct, as nanoGPT's `train.py` globals: defaults, named
//! presets, a TOML file and `--key=value` overrides, merged in that order. Unknown keys are errors.

mod attention;
mod data;
mod model;
mod optimizer;
mod overrides;
mod presets;
#[cfg(test)]
mod tests;

pub use attention::AttentionKind;
pub use data::DataKind;
pub use model::{
    ActivationKind, GeluKind, InitKind, ModelConfig, DEFAULT_CLIP_ALPHA, DEFAULT_CLIP_ZETA, DEFAULT_GATE_INIT,
};
pub use optimizer::OptimizerKind;
pub use overrides::parse_override;
pub use presets::{Preset, PRESETS};

use crate::{Error, Result};
use overrides::explain;
use presets::merge_preset;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole run. Field names and defaults are nanoGPT's `train.py`; `quietgpt train --key=value` sets any.
///
/// Floats are kept in f64, as written (`quietgpt config` prints `learning_rate = 0.001`), and the model and
/// optimizer take them `as f32`: the same f32 that parsing straight into f32 gave. Arithmetic that mixes
/// them (the learning-rate schedule) starts from those f32 values, so training is bitwise what it was when
/// these fields were f32. Older checkpoints hold the f32 values widened to f64 (`0.0010000000474974513`);
/// `de_float` reads such a value back as the short decimal of its f32 (`0.001`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    // I/O
    /// Directory for checkpoints and the metrics log.
    pub out_dir: String,
    /// Evaluate train/val loss (and maybe checkpoint) every this many iterations.
    pub eval_interval: usize,
    /// Print a progress line and append a metrics line every this many iterations.
    pub log_interval: usize,
    /// Batches averaged per split in each evaluation.
    pub eval_iters: usize,
    /// Evaluate once and exit.
    pub eval_only: bool,
    /// Save a checkpoint at every evaluation, not only when val loss improves.
    pub always_save_checkpoint: bool,
    // data
    /// Directory with train.bin, val.bin and vocab.json (or nanoGPT's meta.pkl); read when `data = "text"`.
    pub data_dir: String,
    /// "text" (the prepared `data_dir`) or "backcopy" (Guo et al.'s Bigram-Backcopy task over Tiny
    /// Shakespeare's characters, generated from the seed; see `data::Backcopy`).
    pub data: DataKind,
    /// Start every training and evaluation window of text with a BOS token (one more vocabulary id).
    /// The backcopy task always has one.
    pub bos: bool,
    /// Backcopy: how many of the most frequent characters are triggers (Guo et al.'s k).
    pub triggers: usize,
    /// Micro-batches accumulated into one optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Context length T (also the size of the position embedding).
    pub block_size: usize,
    // model
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Dropout probability in training (embedding, attention weights, residual branches).
    #[serde(deserialize_with = "de_float")]
    pub dropout: f64,
    /// Biases in Linear and LayerNorm layers.
    pub bias: bool,
    /// Attention variant: softmax | quiet | clipped | gated | outgate | sink | relu | sigmoid | softpick (see
    /// `AttentionKind`).
    pub attention: AttentionKind,
    /// Clipped softmax ζ ≥ 1 (`attention = "clipped"` only): p = clip((ζ − γ)·softmax + γ, 0, 1).
    /// Default 1 (Bondarenko et al. 2023).
    #[serde(deserialize_with = "de_float")]
    pub clip_zeta: f64,
    /// Clipped softmax α ≥ 0 (`attention = "clipped"` only): γ = −α/block_size, the same for every row.
    /// Default 12 (Bondarenko et al.'s OPT causal-LM runs).
    #[serde(deserialize_with = "de_float")]
    pub clip_alpha: f64,
    /// Initial gate opening sigmoid(bias) of `attention = "gated"`, in (0, 1). Default 0.25 (Bondarenko
    /// et al.'s OPT runs).
    #[serde(deserialize_with = "de_float")]
    pub gate_init: f64,
    /// Vocabulary size; 0 takes it from the data directory. May be larger than the data's (padding).
    pub vocab_size: usize,
    /// The MLP's activation: "gelu" (nanoGPT's; its form is `gelu`) or "relu" (max(x, 0)).
    pub activation: ActivationKind,
    /// lm_head shares wte's weights (nanoGPT, GPT-2); false gives it its own `lm_head.weight` (vocab, C).
    pub tie_weights: bool,
    /// Initialisation: "nanogpt" (N(0, 0.02), residual projections N(0, 0.02/√(2·n_layer)), zero biases)
    /// or "pytorch" (PyTorch's module defaults: embeddings N(0, 1), Linear weights and biases
    /// U(±1/√fan_in)).
    pub init: InitKind,
    // optimizer
    /// "adamw" (torch.optim.AdamW) or "sgd" (torch.optim.SGD with `momentum`, dampening 0, no Nesterov);
    /// both with nanoGPT's groups (weight_decay on tensors of 2+ dimensions only).
    pub optimizer: OptimizerKind,
    /// SGD's momentum (`optimizer = "sgd"` only), in [0, 1).
    #[serde(deserialize_with = "de_float")]
    pub momentum: f64,
    /// Peak learning rate.
    #[serde(deserialize_with = "de_float")]
    pub learning_rate: f64,
    /// Total optimizer steps.
    pub max_iters: usize,
    /// Weight decay on tensors of 2+ dimensions (matmul weights and embeddings): AdamW's decoupled
    /// p ← p·(1 − lr·wd), or SGD's L2 term g ← g + wd·p.
    #[serde(deserialize_with = "de_float")]
    pub weight_decay: f64,
    /// AdamW's β1 and β2.
    #[serde(deserialize_with = "de_float")]
    pub beta1: f64,
    #[serde(deserialize_with = "de_float")]
    pub beta2: f64,
    /// AdamW epsilon.
    #[serde(deserialize_with = "de_float")]
    pub eps: f64,
    /// Clip the global gradient norm to this; 0 disables clipping.
    #[serde(deserialize_with = "de_float")]
    pub grad_clip: f64,
    // learning-rate schedule
    /// Linear warmup then cosine decay; false keeps learning_rate fixed.
    pub decay_lr: bool,
    pub warmup_iters: usize,
    /// Step at which the cosine reaches min_lr (then it stays there).
    pub lr_decay_iters: usize,
    #[serde(deserialize_with = "de_float")]
    pub min_lr: f64,
    // system
    /// Seed for initialisation, data order and dropout (separate streams).
    pub seed: u64,
    /// Worker threads; 0 uses every core.
    pub threads: usize,
    /// Where the model runs, as nanoGPT's `device` (whose default is "cuda"): "cpu" (the reference engine)
    /// or "cuda" / "cuda:N" (the GPU engine, `engine::cuda`, on GPU N). See `DEVICES`.
    pub device: String,
    /// The arithmetic, as nanoGPT's `dtype`: "auto" (bfloat16 on cuda, float32 on cpu), "bfloat16" (cuda:
    /// bf16 GEMMs and activations, f32 accumulation and master weights, as llm.c) or "float32" (f32
    /// throughout; on cuda with TF32 off, for tight comparison with the CPU engine). "float16" is refused:
    /// there is no loss scaling.
    pub dtype: String,
    /// The MLP's GELU: "erf" (exact, nanoGPT's) or "tanh" (GPT-2's approximation, `gelu_new`).
    pub gelu: GeluKind,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            out_dir: "out".into(),
            eval_interval: 2000,
            log_interval: 1,
            eval_iters: 200,
            eval_only: false,
            always_save_checkpoint: true,
            data_dir: "data/shakespeare_char".into(),
            data: DataKind::Text,
            bos: false,
            triggers: crate::data::DEFAULT_TRIGGERS,
            gradient_accumulation_steps: 1,
            batch_size: 12,
            block_size: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            dropout: 0.0,
            bias: false,
            attention: AttentionKind::Softmax,
            clip_zeta: DEFAULT_CLIP_ZETA as f64,
            clip_alpha: DEFAULT_CLIP_ALPHA as f64,
            gate_init: DEFAULT_GATE_INIT as f64,
            vocab_size: 0,
            activation: ActivationKind::Gelu,
            tie_weights: true,
            init: InitKind::NanoGpt,
            optimizer: OptimizerKind::AdamW,
            momentum: 0.9,
            learning_rate: 6e-4,
            max_iters: 600_000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            decay_lr: true,
            warmup_iters: 2000,
            lr_decay_iters: 600_000,
            min_lr: 6e-5,
            seed: 1337,
            threads: 0,
            device: "cpu".into(),
            dtype: "auto".into(),
            gelu: GeluKind::Erf,
        }
    }
}

/// The values of `device`: those this build runs on, then those it knows but has no engine for.
pub const DEVICES: &[&str] = &["cpu", "cuda"];

impl Config {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Config> {
        let mut table = toml::Table::new();
        merge_preset(&mut table, name)?;
        Config::from_table(table)
    }

    /// Defaults, then `preset`, then the TOML file, then `overrides` (`key=value`, value in TOML syntax or a
    /// bare word), later ones winning.
    pub fn build(preset: Option<&str>, file: Option<&Path>, overrides: &[String]) -> Result<Config> {
        let mut table = toml::Table::new();
        if let Some(p) = preset {
            merge_preset(&mut table, p)?;
        }
        if let Some(f) = file {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            let t: toml::Table =
                text.parse().map_err(|e| Error::Config(format!("{}: not valid TOML: {e}", f.display())))?;
            table.extend(t);
        }
        for o in overrides {
            let (k, v) = parse_override(o)?;
            table.insert(k, v);
        }
        let config = Config::from_table(table)?;
        check_threads(config.threads)?;
        Ok(config)
    }

    /// Merge `key=value` overrides into an existing config (used on resume, where only a few keys may change).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Config> {
        let mut table = toml::Table::try_from(self).map_err(|e| Error::Config(e.to_string()))?;
        for o in overrides {
            let (k, v) = parse_override(o)?;
            table.insert(k, v);
        }
        Config::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Config> {
        let cfg: Config = match table.clone().try_into() {
            Ok(c) => c,
            Err(e) => return Err(Error::Config(explain(&table, e))),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that do not need the data (vocab_size may still be 0 here).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        // Every float first, as the model and optimizer take it (f32: 1e300 is inf there).
        for (key, x) in self.floats() {
            if !(x as f32).is_finite() {
                return bad(format!("{key} must be a finite number, got {x}"));
            }
        }
        self.model_config(1).validate()?; // vocab_size 0 (from the data) checks as 1
        if self.batch_size == 0 || self.gradient_accumulation_steps == 0 {
            return bad("batch_size and gradient_accumulation_steps must be at least 1".into());
        }
        if self.eval_interval == 0 || self.log_interval == 0 || self.eval_iters == 0 {
            return bad("eval_interval, log_interval and eval_iters must be at least 1".into());
        }
        if !(self.learning_rate >= 0.0 && self.min_lr >= 0.0 && self.weight_decay >= 0.0 && self.grad_clip >= 0.0) {
            return bad("learning_rate, min_lr, weight_decay and grad_clip must be non-negative".into());
        }
        // beta1, beta2 and eps as the optimizer takes them (f32: 0.999999999 is 1, 1e-50 is 0).
        if !(0.0..1.0).contains(&(self.beta1 as f32)) || !(0.0..1.0).contains(&(self.beta2 as f32)) {
            return bad(format!("beta1 and beta2 must be in [0, 1), got {} and {}", self.beta1, self.beta2));
        }
        if self.eps as f32 <= 0.0 {
            return bad("eps must be positive".into());
        }
        // as the optimizer takes it (f32)
        if !(0.0..1.0).contains(&(self.momentum as f32)) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        check_device(&self.device)?;
        check_dtype(&self.device, &self.dtype)?;
        if self.decay_lr && self.lr_decay_iters <= self.warmup_iters {
            return bad(format!(
                "lr_decay_iters ({}) must exceed warmup_iters ({}) when decay_lr is on",
                self.lr_decay_iters, self.warmup_iters
            ));
        }
        Ok(())
    }

    /// Every float key with its value.
    fn floats(&self) -> [(&'static str, f64); 12] {
        [
            ("dropout", self.dropout),
            ("clip_zeta", self.clip_zeta),
            ("clip_alpha", self.clip_alpha),
            ("gate_init", self.gate_init),
            ("learning_rate", self.learning_rate),
            ("weight_decay", self.weight_decay),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("eps", self.eps),
            ("momentum", self.momentum),
            ("grad_clip", self.grad_clip),
            ("min_lr", self.min_lr),
        ]
    }

    /// The model's shape with the vocabulary size resolved (from the data when `vocab_size = 0`).
    pub fn model_config(&self, data_vocab: usize) -> ModelConfig {
        ModelConfig {
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            block_size: self.block_size,
            vocab_size: if self.vocab_size == 0 { data_vocab } else { self.vocab_size },
            bias: self.bias,
            dropout: self.dropout as f32,
            attention: self.attention,
            clip_zeta: self.clip_zeta as f32,
            clip_alpha: self.clip_alpha as f32,
            gate_init: self.gate_init as f32,
            gelu: self.gelu,
            activation: self.activation,
            tie_weights: self.tie_weights,
            init: self.init,
        }
    }

    /// Whether every window starts with a BOS token (`bos`, or the backcopy task, which always has one).
    pub fn has_bos(&self) -> bool {
        self.bos || self.data == DataKind::Backcopy
    }

    /// Tokens per optimizer step.
    pub fn tokens_per_iter(&self) -> usize {
        self.gradient_accumulation_steps * self.batch_size * self.block_size
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }
}

/// `device`: "cpu", "cuda" or "cuda:N" (N a GPU's ordinal); anything else lists the choices. Whether a
/// GPU and its libraries are there is found when the engine is made (`engine::create`), with an error
/// that names what is missing.
pub fn check_device(device: &str) -> Result<()> {
    match device {
        "cpu" | "cuda" => Ok(()),
        d if d.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok()) => Ok(()),
        d => Err(Error::Config(format!(
            "unknown device '{d}': expected one of {} (or cuda:N for GPU N)",
            DEVICES.join(", ")
        ))),
    }
}

/// The values of `dtype`.
pub const DTYPES: &[&str] = &["auto", "bfloat16", "float32"];

/// `dtype` for `device`: bfloat16 only on cuda; float16 refused with the reason.
pub fn check_dtype(device: &str, dtype: &str) -> Result<()> {
    match dtype {
        "auto" | "float32" => Ok(()),
        "bfloat16" if device.starts_with("cuda") => Ok(()),
        "bfloat16" => Err(Error::Config(format!(
            "dtype = \"bfloat16\" needs device = \"cuda\" (the CPU engine computes in float32); use dtype=float32 or auto on {device}"
        ))),
        "float16" => Err(Error::Config(
            "dtype = \"float16\" is not supported (it needs loss scaling, which quietgpt does not do); use bfloat16 or float32".into(),
        )),
        d => Err(Error::Config(format!("unknown dtype '{d}': expected one of {}", DTYPES.join(", ")))),
    }
}

/// At most this many worker threads per core: more only slows every step down (they fork and join on
/// each kernel), so it is refused rather than run.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// `threads`: 0 (one per core) or at most `MAX_THREADS_PER_CORE` per core of this machine (as
/// `std::thread::available_parallelism` counts them; unchecked where that is unknown). Checked where a
/// config is made from the command line and where the thread pool starts, not in `validate`, so that a
/// checkpoint made on a bigger machine still loads.
pub fn check_threads(threads: usize) -> Result<()> {
    let Ok(cores) = std::thread::available_parallelism().map(|n| n.get()) else { return Ok(()) };
    let max = cores.saturating_mul(MAX_THREADS_PER_CORE);
    if threads > max {
        return Err(Error::Config(format!(
            "threads = {threads} is more than this machine can use: it has {cores} cores; give at most {max} \
             ({MAX_THREADS_PER_CORE} per core), or 0 for one per core"
        )));
    }
    Ok(())
}

/// A config float: an f64 that is exactly an f32 (what older checkpoints hold: `0.0010000000474974513`
/// for 0.001) becomes the shortest decimal of that f32 (`0.001`), which gives the same f32 back; any other
/// value is kept as written.
fn de_float<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    let short = x as f32;
    Ok(if short as f64 == x { short.to_string().parse().unwrap_or(x) } else { x })
}
