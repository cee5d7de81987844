//! The shape of the network (`ModelConfig`) and the defaults of the variants' hyper-parameters.

use super::AttentionKind;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

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

/// The MLP's activation: `gelu` (nanoGPT, GPT-2; its form is `GeluKind`) or `relu`, max(x, 0) (Guo et
/// al. 2024's Bigram-Backcopy model, `F.relu`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivationKind {
    #[default]
    Gelu,
    Relu,
}

impl ActivationKind {
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Gelu => "gelu",
            ActivationKind::Relu => "relu",
        }
    }
}

impl std::fmt::Display for ActivationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the parameters start (`engine::params::init_params`): `nanogpt` (N(0, 0.02), residual projections
/// N(0, 0.02/√(2L)), zero biases) or `pytorch`, PyTorch's default module init (nn.Embedding N(0, 1),
/// nn.Linear weights and biases U(±1/√fan_in)), which models without an init of their own get (Guo et al.
/// 2024).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitKind {
    #[default]
    NanoGpt,
    PyTorch,
}

impl InitKind {
    pub fn name(self) -> &'static str {
        match self {
            InitKind::NanoGpt => "nanogpt",
            InitKind::PyTorch => "pytorch",
        }
    }
}

impl std::fmt::Display for InitKind {
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
    /// The MLP's activation (`gelu` in the form `gelu` says, or `relu`); older models are `gelu`.
    #[serde(default)]
    pub activation: ActivationKind,
    /// lm_head tied to wte (nanoGPT, GPT-2; older models); false gives lm_head its own `lm_head.weight`.
    #[serde(default = "tied")]
    pub tie_weights: bool,
    /// The initialisation scheme (read only by `init_params`); older models are `nanogpt`.
    #[serde(default)]
    pub init: InitKind,
}

fn tied() -> bool {
    true
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
            activation: ActivationKind::Gelu,
            tie_weights: true,
            init: InitKind::NanoGpt,
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
        if !self.n_embd.is_multiple_of(self.n_head) {
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
