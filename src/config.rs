//! Every setting of a run in one flat serde struct, as nanoGPT's `train.py` globals: defaults, named
//! presets, a TOML file and `--key=value` overrides, merged in that order. Unknown keys are errors.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;

/// The attention variant: how each attention row is normalised, or what gates the attention output.
/// One enum; the kernels read it at one call site each (`model::attention::normalize`, the fused
/// kernel's row normaliser, and the gate around the attention core in `model::gpt`).
///
/// Sources: softmax1 (Evan Miller, "Attention Is Off By One", 2023); clipped softmax and gated attention
/// (Bondarenko, Nagel & Blankevoort, "Quantizable Transformers: Removing Outliers by Helping Attention
/// Heads Do Nothing", NeurIPS 2023); the output gate (Qiu et al., "Gated Attention for Large Language
/// Models: Non-linearity, Sparsity, and Attention-Sink-Free", 2025); the learned sink logit (OpenAI
/// gpt-oss, 2025).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// p_j = exp(s_j) / Σ_k exp(s_k)
    Softmax,
    /// softmax1 ("quiet attention"): p_j = exp(s_j) / (1 + Σ_k exp(s_k)), a head may attend to nothing.
    Quiet,
    /// clipped softmax: p_j = clip((ζ − γ)·softmax(s)_j + γ, 0, 1), γ = −α/T (`clip_zeta`, `clip_alpha`,
    /// T = block_size): weights below −γ/(ζ−γ) become exact zeros.
    Clipped,
    /// softmax attention whose output of head h at token t is scaled by sigmoid(ln_1(x)_t · w_h + b_h):
    /// `attn.c_gate` (n_embd → n_head), one gate per head and token.
    Gated,
    /// softmax attention whose concatenated head outputs are multiplied elementwise by
    /// sigmoid(ln_1(x) W_g (+ b_g)) before c_proj: `attn.c_outgate` (n_embd → n_embd).
    Outgate,
    /// learned sink logit: p_j = exp(s_j) / (exp(σ_h) + Σ_k exp(s_k)) with one learned σ_h per head
    /// (`attn.sink`); softmax1 is σ_h = 0 fixed.
    Sink,
}

impl AttentionKind {
    pub const ALL: [AttentionKind; 6] = [
        AttentionKind::Softmax,
        AttentionKind::Quiet,
        AttentionKind::Clipped,
        AttentionKind::Gated,
        AttentionKind::Outgate,
        AttentionKind::Sink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::Softmax => "softmax",
            AttentionKind::Quiet => "quiet",
            AttentionKind::Clipped => "clipped",
            AttentionKind::Gated => "gated",
            AttentionKind::Outgate => "outgate",
            AttentionKind::Sink => "sink",
        }
    }

    /// Gate values per token for the gated variants: n_head (`gated`) or n_embd (`outgate`); each gate
    /// multiplies n_embd / groups consecutive channels of the attention output. None for the others.
    pub fn gate_groups(self, n_head: usize, n_embd: usize) -> Option<usize> {
        match self {
            AttentionKind::Gated => Some(n_head),
            AttentionKind::Outgate => Some(n_embd),
            _ => None,
        }
    }

    /// Whether rows may sum to less than 1 (a null key, or the clip): quiet, sink and clipped.
    pub fn has_null_mass(self) -> bool {
        matches!(self, AttentionKind::Quiet | AttentionKind::Sink | AttentionKind::Clipped)
    }
}

impl FromStr for AttentionKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AttentionKind::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = AttentionKind::ALL.iter().map(|a| a.name()).collect();
            Error::Config(format!("unknown attention '{s}': expected one of {}", names.join(", ")))
        })
    }
}

impl std::fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The MLP's GELU: `erf`, the exact x·Φ(x) of PyTorch's `nn.GELU()` (nanoGPT, the default), or `tanh`,
/// the approximation ½x(1 + tanh(√(2/π)(x + 0.044715x³))) of GPT-2 (Hugging Face's `gelu_new`), which a
/// model loaded from GPT-2 weights needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeluKind {
    #[default]
    Erf,
    Tanh,
}

impl GeluKind {
    pub fn name(self) -> &'static str {
        match self {
            GeluKind::Erf => "erf",
            GeluKind::Tanh => "tanh",
        }
    }
}

impl std::fmt::Display for GeluKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape of the network; all the model code needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub vocab_size: usize,
    pub bias: bool,
    pub dropout: f32,
    pub attention: AttentionKind,
    /// Clipped softmax ζ (stretch above 1); read only by `clipped`. See `Config::clip_zeta`.
    #[serde(default = "default_clip_zeta")]
    pub clip_zeta: f32,
    /// Clipped softmax α, γ = −α/block_size; read only by `clipped`. See `Config::clip_alpha`.
    #[serde(default = "default_clip_alpha")]
    pub clip_alpha: f32,
    /// Initial opening sigmoid(b) of the per-head gate of `gated` (sets attn.c_gate.bias at init).
    #[serde(default = "default_gate_init")]
    pub gate_init: f32,
    /// The MLP's GELU form; models saved before the key existed are `erf`.
    #[serde(default)]
    pub gelu: GeluKind,
}

/// ζ = 1: Bondarenko et al. (2023) found stretching above 1 unnecessary, and their OPT runs use ζ = 1
/// (`outlier-free-transformers`, opt_attention.py: `clipped_softmax(gamma=-alpha/max_seq_length, eta=1.0)`).
pub const DEFAULT_CLIP_ZETA: f32 = 1.0;
/// α = 12: their causal-LM (OPT-125m) pre-training script `scripts/opt_125m_clipped_softmax.sh` passes
/// `--alpha 12` with block_size 512 (γ = −12/512 ≈ −0.0234); their BERT script uses γ = −0.025 at T = 128.
pub const DEFAULT_CLIP_ALPHA: f32 = 12.0;
/// π_init = 0.25: every gated-attention causal-LM script of Bondarenko et al. (OPT-125m, 350m, 1.3B)
/// passes `--attn_gate_init 0.25`, i.e. bias = logit(0.25).
pub const DEFAULT_GATE_INIT: f32 = 0.25;

fn default_clip_zeta() -> f32 {
    DEFAULT_CLIP_ZETA
}
fn default_clip_alpha() -> f32 {
    DEFAULT_CLIP_ALPHA
}
fn default_gate_init() -> f32 {
    DEFAULT_GATE_INIT
}

impl ModelConfig {
    /// A config with the variant hyper-parameters at their defaults.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n_layer: usize,
        n_head: usize,
        n_embd: usize,
        block_size: usize,
        vocab_size: usize,
        bias: bool,
        dropout: f32,
        attention: AttentionKind,
    ) -> Self {
        ModelConfig {
            n_layer,
            n_head,
            n_embd,
            block_size,
            vocab_size,
            bias,
            dropout,
            attention,
            clip_zeta: DEFAULT_CLIP_ZETA,
            clip_alpha: DEFAULT_CLIP_ALPHA,
            gate_init: DEFAULT_GATE_INIT,
            gelu: GeluKind::Erf,
        }
    }

    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// The clipped softmax's γ = −α/T with T = block_size for every row (see `model::attention`).
    pub fn clip_gamma(&self) -> f64 {
        -(self.clip_alpha as f64) / self.block_size as f64
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.n_layer == 0 || self.n_head == 0 || self.n_embd == 0 || self.block_size == 0 {
            return bad("n_layer, n_head, n_embd and block_size must all be at least 1".into());
        }
        if self.n_embd % self.n_head != 0 {
            return bad(format!("n_embd ({}) must be divisible by n_head ({})", self.n_embd, self.n_head));
        }
        if self.vocab_size == 0 {
            return bad("vocab_size must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.clip_zeta >= 1.0 && self.clip_zeta.is_finite()) {
            return bad(format!("clip_zeta must be a finite number ≥ 1, got {}", self.clip_zeta));
        }
        if !(self.clip_alpha >= 0.0 && self.clip_alpha.is_finite()) {
            return bad(format!("clip_alpha must be a finite number ≥ 0, got {}", self.clip_alpha));
        }
        if !(self.gate_init > 0.0 && self.gate_init < 1.0) {
            return bad(format!("gate_init must be in (0, 1), got {}", self.gate_init));
        }
        Ok(())
    }
}

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
    /// Directory with train.bin, val.bin and vocab.json (or nanoGPT's meta.pkl).
    pub data_dir: String,
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
    /// Attention variant: softmax | quiet | clipped | gated | outgate | sink (see `AttentionKind`).
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
    // optimizer (AdamW)
    /// Peak learning rate.
    #[serde(deserialize_with = "de_float")]
    pub learning_rate: f64,
    /// Total optimizer steps.
    pub max_iters: usize,
    /// Decoupled weight decay on tensors of 2+ dimensions (matmul weights and embeddings).
    #[serde(deserialize_with = "de_float")]
    pub weight_decay: f64,
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
    /// Where the model runs, as nanoGPT's `device` (whose default is "cuda"): "cpu", the only engine of
    /// this build; "cuda" is refused until there is a CUDA engine. See `DEVICES`.
    pub device: String,
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
            gelu: GeluKind::Erf,
        }
    }
}

/// The values of `device`: those this build runs on, then those it knows but has no engine for.
pub const DEVICES: &[&str] = &["cpu", "cuda"];

/// A named preset: a TOML file of `configs/`, overrides of the defaults, built into the binary. Its first
/// line is a `# ` comment that describes it (`quietgpt presets` lists it).
pub struct Preset {
    pub name: &'static str,
    pub toml: &'static str,
}

impl Preset {
    /// The description: the file's first line, without its `# `.
    pub fn about(&self) -> &'static str {
        self.toml.lines().next().and_then(|l| l.strip_prefix('#')).map_or("", str::trim)
    }
}

macro_rules! presets {
    ($($name:literal),* $(,)?) => {
        &[$(Preset { name: $name, toml: include_str!(concat!("../configs/", $name, ".toml")) }),*]
    };
}

/// Every preset, one file each in `configs/`.
pub const PRESETS: &[Preset] = presets![
    "default",
    "shakespeare-char",
    "shakespeare-char-cpu",
    "tiny",
    "medium",
    "experiment",
    "experiment-quick",
];

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
        Config::from_table(table)
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
        self.model_config(1).validate()?; // vocab_size 0 (from the data) checks as 1
        let bad = |m: String| Err(Error::Config(m));
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
        check_device(&self.device)?;
        if self.decay_lr && self.lr_decay_iters <= self.warmup_iters {
            return bad(format!(
                "lr_decay_iters ({}) must exceed warmup_iters ({}) when decay_lr is on",
                self.lr_decay_iters, self.warmup_iters
            ));
        }
        Ok(())
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
        }
    }

    /// Tokens per optimizer step.
    pub fn tokens_per_iter(&self) -> usize {
        self.gradient_accumulation_steps * self.batch_size * self.block_size
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }
}

/// `device`: "cpu" is accepted; "cuda" (or "cuda:N") is a clear refusal; anything else lists the choices.
pub fn check_device(device: &str) -> Result<()> {
    match device {
        "cpu" => Ok(()),
        d if d == "cuda" || d.starts_with("cuda:") => Err(Error::Config(format!(
            "device = \"{d}\": this build has no CUDA engine yet (only the CPU engine); use device=cpu"
        ))),
        d => Err(Error::Config(format!("unknown device '{d}': expected one of {}", DEVICES.join(", ")))),
    }
}

/// A config float: an f64 that is exactly an f32 (what older checkpoints hold: `0.0010000000474974513`
/// for 0.001) becomes the shortest decimal of that f32 (`0.001`), which gives the same f32 back; any other
/// value is kept as written.
fn de_float<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    let short = x as f32;
    Ok(if short as f64 == x { short.to_string().parse().unwrap_or(x) } else { x })
}

fn merge_preset(table: &mut toml::Table, name: &str) -> Result<()> {
    let preset = PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        Error::Config(format!("unknown preset '{name}': expected one of {}", names.join(", ")))
    })?;
    let t: toml::Table = preset.toml.parse().expect("presets are valid TOML");
    table.extend(t);
    Ok(())
}

/// `key=value` → (key, TOML value). The value is read as TOML (`6`, `1e-3`, `true`, `"x"`); anything that
/// does not parse, such as `quiet` or `out/run1`, is taken as a string.
pub fn parse_override(s: &str) -> Result<(String, toml::Value)> {
    let s = s.strip_prefix("--").unwrap_or(s);
    let (k, v) =
        s.split_once('=').ok_or_else(|| Error::Config(format!("override '{s}' is not of the form key=value")))?;
    let k = k.trim().replace('-', "_");
    if k.is_empty() {
        return Err(Error::Config(format!("override '{s}' has an empty key")));
    }
    let value = match format!("v = {v}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("just inserted"),
        Err(_) => toml::Value::String(v.to_string()),
    };
    Ok((k, value))
}

/// Turn serde's message into one that names the offending key: an unknown key says how to list the
/// known ones; a value of the wrong type is found by trying each key alone on the defaults.
fn explain(table: &toml::Table, e: toml::de::Error) -> String {
    let msg = e.message().to_string();
    if msg.starts_with("unknown field") {
        return format!("{msg}. Run `quietgpt config` to list every key with its default");
    }
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialise");
    for (k, v) in table {
        let mut t = defaults.clone();
        t.insert(k.clone(), v.clone());
        if let Err(e) = t.try_into::<Config>() {
            return format!("{k} = {v}: {}", e.message());
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        for p in PRESETS {
            Config::preset(p.name).unwrap();
            assert!(!p.about().is_empty(), "configs/{}.toml should start with a # description", p.name);
        }
        let c = Config::preset("shakespeare-char-cpu").unwrap();
        assert_eq!((c.n_layer, c.n_head, c.n_embd, c.block_size, c.batch_size), (4, 4, 128, 64, 12));
        assert_eq!((c.max_iters, c.lr_decay_iters, c.eval_iters, c.dropout), (2000, 2000, 20, 0.0));
    }

    #[test]
    fn overrides_win_and_unknown_keys_fail() {
        let c = Config::build(
            Some("shakespeare-char"),
            None,
            &["--attention=quiet".into(), "--n_layer=2".into(), "--learning_rate=3e-4".into(), "--out_dir=x/y".into()],
        )
        .unwrap();
        assert_eq!(c.attention, AttentionKind::Quiet);
        assert_eq!((c.n_layer, c.learning_rate, c.out_dir.as_str()), (2, 3e-4, "x/y"));
        let e = Config::build(None, None, &["--n_layayer=2".into()]).unwrap_err().to_string();
        assert!(e.contains("n_layayer"), "{e}");
        let e = Config::build(None, None, &["--n_embd=100".into(), "--n_head=3".into()]).unwrap_err().to_string();
        assert!(e.contains("divisible"), "{e}");
        let e = Config::build(None, None, &["--attention=loud".into()]).unwrap_err().to_string();
        assert!(e.contains("loud"), "{e}");
    }

    #[test]
    fn toml_round_trip() {
        let c = Config::preset("shakespeare-char").unwrap();
        let back = Config::build(None, None, &[]).unwrap();
        assert_ne!(c, back);
        let t: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(c, t);
    }

    #[test]
    fn floats_print_as_written_and_old_checkpoint_floats_read_back() {
        let c = Config::preset("shakespeare-char-cpu").unwrap();
        let text = c.to_toml();
        assert!(text.contains("learning_rate = 0.001\n") && text.contains("eps = 0.00000001\n"), "{text}");
        // What a checkpoint written when these fields were f32 holds.
        let old = text
            .replace("learning_rate = 0.001\n", "learning_rate = 0.0010000000474974513\n")
            .replace("min_lr = 0.0001\n", "min_lr = 0.00009999999747378752\n")
            .replace("eps = 0.00000001\n", "eps = 0.00000000999999993922529\n");
        assert_eq!(toml::from_str::<Config>(&old).unwrap(), c);
        // A value that is no f32 stays as written; the model gets the nearest f32, as before.
        let c = Config::build(None, None, &["learning_rate=3e-4".into()]).unwrap();
        assert_eq!((c.learning_rate, c.learning_rate as f32), (3e-4, 3e-4f32));
    }

    #[test]
    fn device_is_validated() {
        assert_eq!(Config::default().device, "cpu");
        Config::build(None, None, &["device=cpu".into()]).unwrap();
        let e = Config::build(None, None, &["device=cuda".into()]).unwrap_err().to_string();
        assert!(e.contains("no CUDA engine yet"), "{e}");
        let e = Config::build(None, None, &["device=tpu".into()]).unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("cpu, cuda"), "{e}");
        // Checkpoints from before the key existed read as "cpu".
        let old = Config::default().to_toml().replace("device = \"cpu\"\n", "");
        assert_eq!(toml::from_str::<Config>(&old).unwrap().device, "cpu");
    }
}
