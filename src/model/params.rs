//! Where each parameter lives in the one flat buffer, and its nanoGPT name.
//!
//! Tensors of the same kind are stored together across layers, as in llm.c: `qkvw` is (L, 3C, C).
//! `named()` maps them to nanoGPT's per-layer names in `named_parameters()` order. The lm_head is
//! tied to `wte` and exists once. With bias = false the bias tensors have length 0 and no name.

use crate::config::ModelConfig;

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
}

pub const KINDS: [Kind; 16] = [
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
        }
    }

    pub fn per_layer(self) -> bool {
        !matches!(self, Kind::Wte | Kind::Wpe | Kind::LnfW | Kind::LnfB)
    }

    pub fn is_bias(self) -> bool {
        matches!(
            self,
            Kind::Ln1B | Kind::QkvB | Kind::AttProjB | Kind::Ln2B | Kind::FcB | Kind::FcProjB | Kind::LnfB
        )
    }

    /// Shape of one instance (one layer's worth).
    pub fn shape(self, cfg: &ModelConfig) -> Vec<usize> {
        let (c, v, t) = (cfg.n_embd, cfg.vocab_size, cfg.block_size);
        match self {
            Kind::Wte => vec![v, c],
            Kind::Wpe => vec![t, c],
            Kind::QkvW => vec![3 * c, c],
            Kind::QkvB => vec![3 * c],
            Kind::AttProjW => vec![c, c],
            Kind::FcW => vec![4 * c, c],
            Kind::FcB => vec![4 * c],
            Kind::FcProjW => vec![c, 4 * c],
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
    groups: [(usize, usize); 16],
    pub total: usize,
    named: Vec<Tensor>,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let mut groups = [(0, 0); 16];
        let mut off = 0;
        for (i, k) in KINDS.iter().enumerate() {
            let one: usize = k.shape(cfg).iter().product();
            let n = if k.is_bias() && !cfg.bias {
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
            for k in KINDS.iter().filter(|k| k.per_layer()) {
                push(*k, l);
            }
        }
        push(Kind::LnfW, 0);
        push(Kind::LnfB, 0);
        ParamLayout { groups, total: off, named }
    }

    /// Every tensor in nanoGPT's `named_parameters()` order.
    pub fn named(&self) -> &[Tensor] {
        &self.named
    }

    pub fn find(&self, name: &str) -> Option<&Tensor> {
        self.named.iter().find(|t| t.name == name)
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
