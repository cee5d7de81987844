//! `quietgpt export --format hf CHECKPOINT OUT_DIR`: a checkpoint as a Hugging Face GPT-2 directory.

use super::args::resolve_checkpoint;
use super::out::say;
use anyhow::{bail, Context, Result};
use clap::Args;
use quietgpt::train::checkpoint;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "Example:
  quietgpt export --format hf out-gpt2-ft hf-out/
  python -c \"from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('hf-out')\"

Writes config.json and model.safetensors (Conv1D weights transposed to (in, out), names with the transformer.
prefix, lm_head tied, or lm_head.weight with tie_word_embeddings false for tie_weights = false). Only softmax
attention exports: GPT-2 has no form for the other variants. A model without biases is written with zero biases;
activation_function is gelu_new for gelu = \"tanh\", gelu for \"erf\", relu for activation = \"relu\".")]
pub struct ExportArgs {
    /// The output format; hf (Hugging Face GPT-2) is the one there is
    #[arg(long, value_name = "FORMAT", default_value = "hf")]
    format: String,
    /// A checkpoint file, or a directory holding ckpt.safetensors
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: PathBuf,
    /// The directory to write config.json and model.safetensors into
    #[arg(value_name = "OUT_DIR")]
    out_dir: PathBuf,
}

pub fn run(a: ExportArgs) -> Result<()> {
    if a.format != "hf" {
        bail!("--format {}: the formats are hf (a Hugging Face GPT-2 directory)", a.format);
    }
    let path = resolve_checkpoint(&a.checkpoint)?;
    let ck = checkpoint::load(&path).with_context(|| format!("cannot load the checkpoint {}", path.display()))?;
    quietgpt::hf::export(&a.out_dir, &ck.model, &ck.params)
        .with_context(|| format!("cannot export {} as a Hugging Face GPT-2", path.display()))?;
    say!("wrote {}/config.json and model.safetensors", a.out_dir.display());
    Ok(())
}
