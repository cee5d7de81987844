//! Where each parameter lives in the one flat buffer, and its nanoGPT name.
//!
//! Tensors of the same kind are stored together across layers, as in llm.c: `qkvw` is (L, 3C, C).
//! `named()` maps them to nanoGPT's per-layer names in `named_parameters()` order. The lm_head is
//! tied to `wte` and exists once (nanoGPT), unless `tie_weights = false`: then `lm_head.weight` (V, C)
//! is a tensor of its own, stored last and named last (after ln_f, as in nanoGPT's `named_parameters()`
//! of an untied model and in Hugging Face's GPT-2), decayed as a 2-D tensor. With bias = false the bias
//! tensors have length 0 and no name.
//!
//! The attention variants' own tensors come last in storage and have length 0 (and no name) unless the
//! variant uses them, so the layout of softmax and quiet models, and their checkpoints, are unchanged:
//!
//! | tensor (layer l)                          | shape       | variant            | init             | decay |
//! |-------------------------------------------|-------------|--------------------|------------------|-------|
//! | `transformer.h.{l}.attn.sink`             | [n_head]    | sink               | 0 (= softmax1)   | no    |
//! | `transformer.h.{l}.attn.c_gate.weight`    | [n_head, C] | gated              | N(0, 0.02)       | yes   |
//! | `transformer.h.{l}.attn.c_gate.bias`      | [n_head]    | gated              | logit(gate_init) | no    |
//! | `transformer.h.{l}.attn.c_outgate.weight` | [C, C]      | outgate            | N(0, 0.02)       | yes   |
//! | `transformer.h.{l}.attn.c_outgate.bias`   | [C]         | outgate, bias=true | 0 (gate ½ open)  | no    |
//!
//! The init column is `init = "nanogpt"`'s; under `"pytorch"` the gate weights and the output gate's bias
//! are uniform, as nn.Linear's (see `init_of`). The per-head gate's bias exists whatever `bias` says: it is
//! what sets the gate's initial opening (Bondarenko et al. always give the gate a bias). Decay follows
//! nanoGPT's rule, 2+ dimensions.

use super::cpu::real::Real;
use crate::config::ModelConfig;
use crate::rng::Rng;

/// The kinds of tensor, in storage order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Wte,
    Wpe,
    Ln1W,
    Ln1B,
    QkvW,
    QkvB,
    AttProjW,
    AttProjB,
    Ln2W,
    Ln2B,
    FcW,
    FcB,
    FcProjW,
    FcProjB,
    LnfW,
    LnfB,
    /// attn.sink (n_head): the learned sink logits of `sink`.
    Sink,
    /// attn.c_gate (n_head, C) + bias (n_head): the per-head gate of `gated`.
    GateW,
    GateB,
    /// attn.c_outgate (C, C) + bias (C, with bias = true): the elementwise output gate of `outgate`.
    OutGateW,
    OutGateB,
    /// lm_head.weight (V, C): the classifier of an untied model (`tie_weights = false`).
    LmHead,
}

/// Every kind, in storage order (= the enum's order).
pub const KINDS: [Kind; 22] = [
    Kind::Wte,
    Kind::Wpe,
    Kind::Ln1W,
    Kind::Ln1B,
    Kind::QkvW,
    Kind::QkvB,
    Kind::AttProjW,
    Kind::AttProjB,
    Kind::Ln2W,
    Kind::Ln2B,
    Kind::FcW,
    Kind::FcB,
    Kind::FcProjW,
    Kind::FcProjB,
    Kind::LnfW,
    Kind::LnfB,
    Kind::Sink,
    Kind::GateW,
    Kind::GateB,
    Kind::OutGateW,
    Kind::OutGateB,
    Kind::LmHead,
];

/// The per-layer kinds in naming (`named_parameters()`) order: the attention's own tensors after c_proj.
const LAYER_NAME_ORDER: [Kind; 17] = [
    Kind::Ln1W,
    Kind::Ln1B,
    Kind::QkvW,
    Kind::QkvB,
    Kind::AttProjW,
    Kind::AttProjB,
    Kind::Sink,
    Kind::GateW,
    Kind::GateB,
    Kind::OutGateW,
    Kind::OutGateB,
    Kind::Ln2W,
    Kind::Ln2B,
    Kind::FcW,
    Kind::FcB,
    Kind::FcProjW,
    Kind::FcProjB,
];

impl Kind {
    /// nanoGPT's name for layer `l` (ignored for the non-layer tensors).
    pub fn name(self, l: usize) -> String {
        let h = |s: &str| format!("transformer.h.{l}.{s}");
        match self {
            Kind::Wte => "transformer.wte.weight".into(),
            Kind::Wpe => "transformer.wpe.weight".into(),
            Kind::Ln1W => h("ln_1.weight"),
            Kind::Ln1B => h("ln_1.bias"),
            Kind::QkvW => h("attn.c_attn.weight"),
            Kind::QkvB => h("attn.c_attn.bias"),
            Kind::AttProjW => h("attn.c_proj.weight"),
            Kind::AttProjB => h("attn.c_proj.bias"),
            Kind::Ln2W => h("ln_2.weight"),
            Kind::Ln2B => h("ln_2.bias"),
            Kind::FcW => h("mlp.c_fc.weight"),
            Kind::FcB => h("mlp.c_fc.bias"),
            Kind::FcProjW => h("mlp.c_proj.weight"),
            Kind::FcProjB => h("mlp.c_proj.bias"),
            Kind::LnfW => "transformer.ln_f.weight".into(),
            Kind::LnfB => "transformer.ln_f.bias".into(),
            Kind::Sink => h("attn.sink"),
            Kind::GateW => h("attn.c_gate.weight"),
            Kind::GateB => h("attn.c_gate.bias"),
            Kind::OutGateW => h("attn.c_outgate.weight"),
            Kind::OutGateB => h("attn.c_outgate.bias"),
            Kind::LmHead => "lm_head.weight".into(),
        }
    }

    pub fn per_layer(self) -> bool {
        !matches!(self, Kind::Wte | Kind::Wpe | Kind::LnfW | Kind::LnfB | Kind::LmHead)
    }

    /// Biases that exist only with `bias = true` (and start at 0).
    pub fn is_bias(self) -> bool {
        matches!(
            self,
            Kind::Ln1B
                | Kind::QkvB
                | Kind::AttProjB
                | Kind::Ln2B
                | Kind::FcB
                | Kind::FcProjB
                | Kind::LnfB
                | Kind::OutGateB
        )
    }

    /// Whether a model of `cfg` has this tensor (else its group has length 0).
    pub fn present(self, cfg: &ModelConfig) -> bool {
        use crate::config::AttentionKind as A;
        let variant = match self {
            Kind::Sink => cfg.attention == A::Sink,
            Kind::GateW | Kind::GateB => cfg.attention == A::Gated,
            Kind::OutGateW | Kind::OutGateB => cfg.attention == A::Outgate,
            Kind::LmHead => !cfg.tie_weights,
            _ => true,
        };
        variant && (cfg.bias || !self.is_bias())
    }

    /// Shape of one instance (one layer's worth).
    pub fn shape(self, cfg: &ModelConfig) -> Vec<usize> {
        let (c, v, t) = (cfg.n_embd, cfg.vocab_size, cfg.block_size);
        match self {
            Kind::Wte | Kind::LmHead => vec![v, c],
            Kind::Wpe => vec![t, c],
            Kind::QkvW => vec![3 * c, c],
            Kind::QkvB => vec![3 * c],
            Kind::AttProjW => vec![c, c],
            Kind::FcW => vec![4 * c, c],
            Kind::FcB => vec![4 * c],
            Kind::FcProjW => vec![c, 4 * c],
            Kind::Sink | Kind::GateB => vec![cfg.n_head],
            Kind::GateW => vec![cfg.n_head, c],
            Kind::OutGateW => vec![c, c],
            _ => vec![c],
        }
    }
}

/// A named tensor of the flat buffer: nanoGPT name, shape, and range.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

impl Tensor {
    /// AdamW decays tensors of two or more dimensions (nanoGPT's `configure_optimizers`).
    pub fn decays(&self) -> bool {
        self.shape.len() >= 2
    }
}

#[derive(Clone, Debug)]
pub struct ParamLayout {
    /// (offset, length) of each kind's group, all layers together.
    groups: [(usize, usize); KINDS.len()],
    /// Whether AdamW decays each kind (see `Tensor::decays`), kept so that a step needs no shapes.
    decays: [bool; KINDS.len()],
    pub total: usize,
    named: Vec<Tensor>,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let mut groups = [(0, 0); KINDS.len()];
        let mut decays = [false; KINDS.len()];
        let mut off = 0;
        for (i, k) in KINDS.iter().enumerate() {
            debug_assert_eq!(*k as usize, i);
            decays[i] = k.shape(cfg).len() >= 2;
            let one: usize = k.shape(cfg).iter().product();
            let n = if !k.present(cfg) {
                0
            } else if k.per_layer() {
                one * cfg.n_layer
            } else {
                one
            };
            groups[i] = (off, n);
            off += n;
        }
        // nanoGPT order: wte, wpe, then each layer's tensors, then ln_f.
        let mut named = Vec::new();
        let mut push = |k: Kind, l: usize| {
            let (goff, glen) = groups[k as usize];
            if glen == 0 {
                return;
            }
            let shape = k.shape(cfg);
            let len: usize = shape.iter().product();
            let offset = goff + if k.per_layer() { l * len } else { 0 };
            named.push(Tensor { name: k.name(l), kind: k, shape, offset, len });
        };
        push(Kind::Wte, 0);
        push(Kind::Wpe, 0);
        for l in 0..cfg.n_layer {
            for k in LAYER_NAME_ORDER.iter() {
                push(*k, l);
            }
        }
        push(Kind::LnfW, 0);
        push(Kind::LnfB, 0);
        push(Kind::LmHead, 0);
        debug_assert_eq!(named.iter().map(|t| t.len).sum::<usize>(), off, "a present tensor has no name");
        ParamLayout { groups, decays, total: off, named }
    }

    /// Every tensor in nanoGPT's `named_parameters()` order.
    pub fn named(&self) -> &[Tensor] {
        &self.named
    }

    pub fn find(&self, name: &str) -> Option<&Tensor> {
        self.named.iter().find(|t| t.name == name)
    }

    /// Whether AdamW decays the tensors of `kind` (two or more dimensions, as `Tensor::decays`).
    pub fn decays(&self, kind: Kind) -> bool {
        self.decays[kind as usize]
    }

    /// The whole group of `kind` (all layers).
    pub fn range(&self, kind: Kind) -> std::ops::Range<usize> {
        let (o, n) = self.groups[kind as usize];
        o..o + n
    }

    /// Layer `l`'s instance of `kind`.
    pub fn layer_range(&self, kind: Kind, l: usize, cfg_layers: usize) -> std::ops::Range<usize> {
        let (o, n) = self.groups[kind as usize];
        let one = n / cfg_layers;
        o + l * one..o + (l + 1) * one
    }
}

/// The number of parameters of a model of `cfg` (`ParamLayout::new(cfg).total`), in checked arithmetic:
/// None when it overflows, so that absurd shapes can be refused before anything is built.
pub fn param_count(cfg: &ModelConfig) -> Option<u64> {
    let (c, v, t, nh, l) =
        (cfg.n_embd as u64, cfg.vocab_size as u64, cfg.block_size as u64, cfg.n_head as u64, cfg.n_layer as u64);
    let mut total = 0u64;
    for k in KINDS.iter().filter(|k| k.present(cfg)) {
        // `Kind::shape`, multiplied out
        let one = match k {
            Kind::Wte | Kind::LmHead => v.checked_mul(c)?,
            Kind::Wpe => t.checked_mul(c)?,
            Kind::QkvW => c.checked_mul(c)?.checked_mul(3)?,
            Kind::QkvB => c.checked_mul(3)?,
            Kind::AttProjW | Kind::OutGateW => c.checked_mul(c)?,
            Kind::FcW | Kind::FcProjW => c.checked_mul(c)?.checked_mul(4)?,
            Kind::FcB => c.checked_mul(4)?,
            Kind::Sink | Kind::GateB => nh,
            Kind::GateW => nh.checked_mul(c)?,
            _ => c,
        };
        total = total.checked_add(if k.per_layer() { one.checked_mul(l)? } else { one })?;
    }
    Some(total)
}

/// How a tensor starts (see `init_of`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Every element this value.
    Const(f64),
    /// N(0, std²).
    Normal(f64),
    /// U(−bound, bound).
    Uniform(f64),
}

/// How a tensor of `kind` starts in a model of `config`, by `config.init`:
///
/// | tensor                                  | `nanogpt` (nanoGPT's `_init_weights`) | `pytorch` (module defaults)  |
/// |-----------------------------------------|---------------------------------------|------------------------------|
/// | wte, wpe (nn.Embedding)                 | N(0, 0.02)                            | N(0, 1)                      |
/// | Linear weights, lm_head, gate weights   | N(0, 0.02)                            | U(±1/√fan_in)                |
/// | attn.c_proj, mlp.c_proj weights         | N(0, 0.02/√(2L))                      | U(±1/√fan_in)                |
/// | Linear biases (bias = true)             | 0                                     | U(±1/√fan_in)                |
/// | LayerNorm weight / bias                 | 1 / 0                                 | 1 / 0                        |
/// | attn.sink                               | 0 (starts as softmax1)                | 0                            |
/// | attn.c_gate.bias (`gated`)              | logit(gate_init)                      | logit(gate_init)             |
/// | attn.c_outgate.bias (`outgate`)         | 0 (gate ½ open)                       | U(±1/√C), an nn.Linear bias  |
///
/// fan_in is the Linear's input width: C, or 4C for mlp.c_proj. U(±1/√fan_in) is nn.Linear's
/// `kaiming_uniform_(a=√5)` for the weight (bound √3·√(1/3)/√fan_in) and its bias init.
pub fn init_of(kind: Kind, config: &ModelConfig) -> Init {
    use crate::config::InitKind;
    let c = config.n_embd as f64;
    // the input width of the Linear a weight or bias belongs to
    let fan_in = match kind {
        Kind::FcProjW | Kind::FcProjB => Some(4.0 * c),
        Kind::QkvW
        | Kind::QkvB
        | Kind::AttProjW
        | Kind::AttProjB
        | Kind::FcW
        | Kind::FcB
        | Kind::GateW
        | Kind::OutGateW
        | Kind::OutGateB
        | Kind::LmHead => Some(c),
        _ => None,
    };
    match kind {
        Kind::Ln1W | Kind::Ln2W | Kind::LnfW => Init::Const(1.0),
        Kind::Ln1B | Kind::Ln2B | Kind::LnfB | Kind::Sink => Init::Const(0.0),
        Kind::GateB => {
            let g = config.gate_init as f64;
            Init::Const((g / (1.0 - g)).ln())
        }
        k => match (config.init, fan_in) {
            (InitKind::NanoGpt, _) if k.is_bias() => Init::Const(0.0),
            (InitKind::NanoGpt, _) if matches!(k, Kind::AttProjW | Kind::FcProjW) => {
                Init::Normal(0.02 / (2.0 * config.n_layer as f64).sqrt())
            }
            (InitKind::NanoGpt, _) => Init::Normal(0.02),
            (InitKind::PyTorch, Some(fan_in)) => Init::Uniform(1.0 / fan_in.sqrt()),
            (InitKind::PyTorch, None) => Init::Normal(1.0), // wte, wpe: nn.Embedding
        },
    }
}

/// The initialisation of `config.init` (see `init_of`), drawn from `rng` on the host, the same for
/// every engine.
///
/// The tensors every variant has are drawn first, in nanoGPT order (an untied lm_head last), so that
/// they get the same values as softmax's for the same seed; the variant's own tensors follow from the
/// same stream.
pub fn init_params<F: Real>(config: &ModelConfig, layout: &ParamLayout, rng: &mut Rng, params: &mut [F]) {
    let own = |k: Kind| matches!(k, Kind::Sink | Kind::GateW | Kind::GateB | Kind::OutGateW | Kind::OutGateB);
    let named = layout.named();
    let order: Vec<_> =
        named.iter().filter(|t| !own(t.kind)).chain(named.iter().filter(|t| own(t.kind))).cloned().collect();
    for t in order {
        let p = &mut params[t.offset..t.offset + t.len];
        match init_of(t.kind, config) {
            Init::Const(x) => p.fill(F::from_f64(x)),
            Init::Normal(std) => p.iter_mut().for_each(|x| *x = F::from_f64(rng.normal() * std)),
            Init::Uniform(bound) => p.iter_mut().for_each(|x| *x = F::from_f64(bound * (2.0 * rng.uniform() - 1.0))),
        }
    }
}
