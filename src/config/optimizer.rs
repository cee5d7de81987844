//! The optimizer (`OptimizerKind`).

use serde::{Deserialize, Serialize};

/// The optimizer of a run: `adamw`, torch.optim.AdamW (nanoGPT's), or `sgd`, torch.optim.SGD with
/// momentum (dampening 0, no Nesterov), as Guo et al. 2024 also train with. Both use nanoGPT's groups:
/// weight decay only on tensors of 2+ dimensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    AdamW,
    Sgd,
}

impl OptimizerKind {
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Sgd => "sgd",
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
