//! The one place where analysis reads or writes a model's parameters directly (`Gpt::layout` and
//! `Gpt::params`): reading each tensor for the weight statistics, fake-quantizing weights in place,
//! and the snapshot that puts the original bits back. When the engine stops exposing its host
//! parameters, these three functions are what changes.

use crate::engine::cpu::Gpt;
use crate::engine::params::Tensor;
use crate::Result;

/// Every parameter tensor in nanoGPT order, with its values.
pub fn named_tensors(model: &Gpt) -> impl Iterator<Item = (&Tensor, &[f32])> {
    model.layout.named().iter().map(|t| (t, &model.params[t.offset..t.offset + t.len]))
}

/// `f` on the values of every tensor that `select` picks, in place (stops at the first error).
pub fn update_tensors(
    model: &mut Gpt,
    select: impl Fn(&Tensor) -> bool,
    mut f: impl FnMut(&Tensor, &mut [f32]) -> Result<()>,
) -> Result<()> {
    for t in model.layout.named().iter().filter(|t| select(t)) {
        f(t, &mut model.params[t.offset..t.offset + t.len])?;
    }
    Ok(())
}

/// A copy of all parameters, taken before they are changed in place and restored afterwards.
pub struct ParamSnapshot(Vec<f32>);

impl ParamSnapshot {
    pub fn take(model: &Gpt) -> Self {
        ParamSnapshot(model.params.clone())
    }

    /// The model's parameters become the snapshot's again, bit for bit.
    pub fn restore(&self, model: &mut Gpt) {
        model.params.copy_from_slice(&self.0);
    }
}
