//! Generation as nanoGPT's `sample.py`: crop the context to block_size, scale the last position's logits
//! by 1/temperature, keep the top_k, sample from the softmax.

use crate::data::Tokenizer;
use crate::engine::cpu::Gpt;
use crate::rng::Rng;
use crate::{Error, Result};
use std::ops::ControlFlow;

#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Prompt text (already read from `FILE:path` by the caller).
    pub start: String,
    pub num_samples: usize,
    pub max_new_tokens: usize,
    /// > 0; 1.0 samples the model's distribution, lower is more conservative.
    pub temperature: f32,
    /// Keep only the k most likely tokens (None: all).
    pub top_k: Option<usize>,
    pub seed: u64,
    /// The model's BOS id when it was trained with one (`bos`, or the backcopy task): the context then
    /// always starts with BOS, and the start text may be empty.
    pub bos: Option<u32>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            start: "\n".into(),
            num_samples: 10,
            max_new_tokens: 500,
            temperature: 0.8,
            top_k: Some(200),
            seed: 1337,
            bos: None,
        }
    }
}

impl SampleOptions {
    /// The checks that need no model: a finite temperature above 0, top_k at least 1.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Config(format!("temperature must be a finite number > 0, got {}", self.temperature)));
        }
        if self.top_k == Some(0) {
            return Err(Error::Config("top_k must be at least 1".into()));
        }
        Ok(())
    }
}

/// What `generate_stream` reports, in order, for each sample: its text piece by piece (the prompt, then
/// each new token's text as soon as it is sampled), then the whole sample.
#[derive(Clone, Copy, Debug)]
pub enum Piece<'a> {
    /// More text of sample `sample`.
    Text { sample: usize, text: &'a str },
    /// Sample `sample` is done; `text` is all of it, prompt included.
    End { sample: usize, text: &'a str },
}

/// Generate `num_samples` continuations of `start`; each returned string includes the prompt.
/// `on_sample` sees each one as soon as it is done.
pub fn generate(
    model: &mut Gpt<f32>,
    tok: &Tokenizer,
    opts: &SampleOptions,
    on_sample: &mut dyn FnMut(usize, &str),
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    generate_stream(model, tok, opts, &mut |piece| {
        if let Piece::End { sample, text } = piece {
            on_sample(sample, text);
            out.push(text.to_string());
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// `generate`, streamed: `on_piece` sees every token's text as it is sampled (see `Piece`) and may stop
/// the generation (`ControlFlow::Break`, e.g. when the reader has gone). Nothing is kept across samples,
/// so `num_samples` may be as large as one likes. The same samples as `generate`, token for token.
pub fn generate_stream(
    model: &mut Gpt<f32>,
    tok: &Tokenizer,
    opts: &SampleOptions,
    on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
) -> Result<()> {
    opts.validate()?;
    let prompt: Vec<u32> = tok.encode(&opts.start)?.into_iter().map(u32::from).collect();
    if prompt.is_empty() && opts.bos.is_none() {
        return Err(Error::Data("the start text is empty: give at least one token".into()));
    }
    let (bs, v) = (model.config.block_size, model.config.vocab_size);
    // With a BOS token the context is BOS and the last block_size − 1 tokens, as in training.
    let (bos, room): (&[u32], usize) = match &opts.bos {
        Some(b) => (std::slice::from_ref(b), bs.saturating_sub(1)),
        None => (&[], bs),
    };
    let mut ctx = Vec::with_capacity(bs);
    let mut rng = Rng::new(opts.seed, 0);
    let mut probs = vec![0.0f64; v];
    let mut order: Vec<usize> = (0..v).collect();
    let prompt_text = tok.decode(&prompt);
    for s in 0..opts.num_samples {
        let mut ids = prompt.clone();
        if on_piece(Piece::Text { sample: s, text: &prompt_text }).is_break() {
            return Ok(());
        }
        // ids[shown..] are sampled but not yet shown: a GPT-2 token may hold part of a character.
        let mut shown = ids.len();
        for _ in 0..opts.max_new_tokens {
            ctx.clear();
            ctx.extend_from_slice(bos);
            ctx.extend_from_slice(&ids[ids.len().saturating_sub(room)..]);
            let t = ctx.len();
            model.forward(&ctx, None, 1, t, None)?;
            let logits = &model.logits()[(t - 1) * v..t * v];
            // Tokens the tokenizer cannot produce (padding of vocab_size) are never sampled.
            let usable = tok.vocab_size().min(v);
            for (p, &l) in probs.iter_mut().zip(logits) {
                *p = l as f64 / opts.temperature as f64;
            }
            probs[usable..].fill(f64::NEG_INFINITY);
            if let Some(k) = opts.top_k.filter(|&k| k < usable) {
                order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                let kth = probs[order[k - 1]];
                probs.iter_mut().filter(|p| **p < kth).for_each(|p| *p = f64::NEG_INFINITY);
            }
            let m = probs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut total = 0.0;
            for p in probs.iter_mut() {
                *p = (*p - m).exp();
                total += *p;
            }
            let mut r = rng.uniform() * total;
            let mut next = usable - 1;
            for (i, &p) in probs.iter().enumerate().take(usable) {
                if r < p {
                    next = i;
                    break;
                }
                r -= p;
            }
            ids.push(next as u32);
            let piece = tok.decode(&ids[shown..]);
            // An incomplete character decodes to U+FFFD: wait for its other bytes (at most 4 tokens).
            if !piece.ends_with(char::REPLACEMENT_CHARACTER) || ids.len() - shown >= 4 {
                if on_piece(Piece::Text { sample: s, text: &piece }).is_break() {
                    return Ok(());
                }
                shown = ids.len();
            }
        }
        if shown < ids.len() && on_piece(Piece::Text { sample: s, text: &tok.decode(&ids[shown..]) }).is_break() {
            return Ok(());
        }
        if on_piece(Piece::End { sample: s, text: &tok.decode(&ids) }).is_break() {
            return Ok(());
        }
    }
    Ok(())
}
