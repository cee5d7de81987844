//! Export a quietgpt model as a Hugging Face GPT-2 directory.

use super::*;

/// Write a model as a Hugging Face GPT-2 directory (`config.json`, `model.safetensors`) that
/// `GPT2LMHeadModel.from_pretrained` loads. Softmax attention only: the other variants compute what
/// GPT-2 cannot express. A model without biases is written with zero biases (the same function). The
/// activation is GPT-2's `activation_function` (`gelu_new`, `gelu` or `relu`); an untied lm_head is
/// written as `lm_head.weight` with `tie_word_embeddings: false`.
pub fn export(dir: &Path, model: &ModelConfig, params: &[f32]) -> Result<()> {
    if model.attention != AttentionKind::Softmax {
        return Err(Error::Config(format!(
            "attention = \"{}\" cannot be exported as GPT-2: transformers' GPT2LMHeadModel computes softmax \
             attention only, so it would load the weights and compute something else. Only attention = \
             \"softmax\" models export to Hugging Face format",
            model.attention
        )));
    }
    let layout = ParamLayout::new(model);
    if params.len() != layout.total {
        return Err(Error::Config(format!("{} parameters for a model of {}", params.len(), layout.total)));
    }
    // the same model with biases: its tensors, from ours or zero
    let full = ModelConfig { bias: true, dropout: 0.0, ..model.clone() };
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = vec![];
    for t in ParamLayout::new(&full).named() {
        let values = match layout.find(&t.name) {
            Some(s) => params[s.offset..s.offset + s.len].to_vec(),
            None => vec![0.0; t.len],
        };
        let (shape, values) = if transposed(t.kind) {
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let mut out = vec![0.0f32; t.len];
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
            (vec![cols, rows], out)
        } else {
            (t.shape.clone(), values)
        };
        owned.push((t.name.clone(), shape, values));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        owned.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).expect("sizes agree")))
        .collect();
    let st = serialize(views, HashMap::from([("format".to_string(), "pt".to_string())]))?;
    let p = model.dropout as f64;
    let mut config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": match (model.activation, model.gelu) {
            (ActivationKind::Relu, _) => "relu",
            (ActivationKind::Gelu, GeluKind::Tanh) => "gelu_new",
            (ActivationKind::Gelu, GeluKind::Erf) => "gelu",
        },
        "n_layer": model.n_layer,
        "n_head": model.n_head,
        "n_embd": model.n_embd,
        "n_positions": model.block_size,
        "n_ctx": model.block_size,
        "n_inner": null,
        "vocab_size": model.vocab_size,
        "layer_norm_epsilon": EPS,
        "attn_pdrop": p,
        "embd_pdrop": p,
        "resid_pdrop": p,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": model.tie_weights,
        "use_cache": true,
        "torch_dtype": "float32",
    });
    if model.vocab_size > 50256 {
        config["bos_token_id"] = 50256.into();
        config["eos_token_id"] = 50256.into();
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let text = serde_json::to_string_pretty(&config).expect("plain JSON") + "\n";
    crate::fs::write_atomic(&dir.join(CONFIG_JSON), text.as_bytes())?;
    crate::fs::write_atomic(&dir.join(WEIGHTS_FILE), &st)
}
