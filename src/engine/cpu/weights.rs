//! Parameters to and from safetensors, under nanoGPT's names. A tied lm_head is
//! `transformer.wte.weight`, stored once; a stray `lm_head.weight` on load is accepted only if it equals
//! wte. An untied model (`tie_weights = false`) has `lm_head.weight` of its own.

use super::gpt::Gpt;
use super::real::Real;
use crate::engine::params::ParamLayout;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;

/// A tensor's values as F, from an F32, F64 or I64 safetensors view.
pub fn to_vec<F: Real>(view: &TensorView) -> Result<Vec<F>> {
    let d = view.data();
    let bad = || Error::Checkpoint(format!("tensor of dtype {:?} and {} bytes is malformed", view.dtype(), d.len()));
    Ok(match view.dtype() {
        Dtype::F32 => {
            d.chunks_exact(4).map(|b| F::from_f64(f32::from_le_bytes(b.try_into().unwrap()) as f64)).collect()
        }
        Dtype::F64 => d.chunks_exact(8).map(|b| F::from_f64(f64::from_le_bytes(b.try_into().unwrap()))).collect(),
        Dtype::I64 => {
            d.chunks_exact(8).map(|b| F::from_f64(i64::from_le_bytes(b.try_into().unwrap()) as f64)).collect()
        }
        _ => return Err(bad()),
    })
}

/// Parse safetensors bytes, naming `what` (usually the file) in the error.
pub fn parse<'a>(bytes: &'a [u8], what: &str) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        Error::Checkpoint(format!("{what} is not a valid safetensors file ({e}); is it truncated or corrupt?"))
    })
}

/// Fill `dst` (laid out by `layout`) from the tensors `prefix + name`. Every tensor must be present with
/// the right shape. Keys that start with `prefix` but name no tensor of the layout are errors too.
pub fn load_flat<F: Real>(dst: &mut [F], layout: &ParamLayout, st: &SafeTensors, prefix: &str) -> Result<()> {
    for t in layout.named() {
        let key = format!("{prefix}{}", t.name);
        let view = st.tensor(&key).map_err(|_| {
            Error::Checkpoint(format!("tensor '{key}' is missing: the checkpoint was made for another model config"))
        })?;
        if view.shape() != t.shape.as_slice() {
            return Err(Error::Checkpoint(format!(
                "tensor '{key}' has shape {:?} but this model needs {:?}: the checkpoint was made for another model config",
                view.shape(),
                t.shape
            )));
        }
        dst[t.offset..t.offset + t.len].copy_from_slice(&to_vec::<F>(&view)?);
    }
    for name in st.names() {
        if let Some(rest) = name.strip_prefix(prefix) {
            if layout.find(rest).is_none() && !(prefix.is_empty() && is_foreign(rest)) {
                return Err(Error::Checkpoint(format!(
                    "tensor '{name}' has no place in this model (bias or layer count differ?)"
                )));
            }
        }
    }
    // a tied model reads an lm_head.weight beside wte only if it is wte
    if let (true, None, Some(wte), Ok(head)) =
        (prefix.is_empty(), layout.find(LM_HEAD), layout.find(WTE), st.tensor(LM_HEAD))
    {
        if head.shape() != wte.shape.as_slice() || to_vec::<F>(&head)? != dst[wte.offset..wte.offset + wte.len] {
            return Err(Error::Checkpoint(format!(
                "tensor '{LM_HEAD}' differs from '{WTE}': the weights are of an untied model, but this model ties \
                 them (tie_weights = true); load them into a model with tie_weights = false"
            )));
        }
    }
    Ok(())
}

const LM_HEAD: &str = "lm_head.weight";
const WTE: &str = "transformer.wte.weight";

/// Keys a weights file may carry that are not parameters of our layout.
fn is_foreign(name: &str) -> bool {
    name == "lm_head.weight" || name.starts_with("optimizer.") || name.ends_with(".attn.bias")
}

/// The (name, F32 view) list of a flat buffer, names prefixed; for `serialize`.
pub fn views<'a>(src: &'a [f32], layout: &ParamLayout, prefix: &str) -> Vec<(String, TensorView<'a>)> {
    layout
        .named()
        .iter()
        .map(|t| {
            let bytes = f32_bytes(&src[t.offset..t.offset + t.len]);
            (format!("{prefix}{}", t.name), TensorView::new(Dtype::F32, t.shape.clone(), bytes).expect("sizes agree"))
        })
        .collect()
}

fn f32_bytes(x: &[f32]) -> &[u8] {
    // f32 has no padding and any byte pattern is a valid u8; safetensors wants little-endian, which x86-64
    // and aarch64 are.
    #[cfg(target_endian = "big")]
    compile_error!("safetensors output assumes a little-endian machine");
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}

/// Serialise named tensor lists plus string metadata.
pub fn serialize(tensors: Vec<(String, TensorView<'_>)>, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    safetensors::serialize(tensors, Some(metadata)).map_err(|e| Error::Checkpoint(format!("cannot serialise: {e}")))
}

impl<F: Real> Gpt<F> {
    /// Load the parameters from a nanoGPT-named weights file.
    pub fn load_params(&mut self, st: &SafeTensors) -> Result<()> {
        let mut params = std::mem::take(&mut self.params);
        let r = load_flat(&mut params, &self.layout, st, "");
        self.params = params;
        r
    }
}
